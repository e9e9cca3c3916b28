"""The FastAPI application: REST under /api/v1 (and Socket.IO at /socket.io)."""
