"""Routes: ticket_queries (being written)."""

from fastapi import APIRouter

router = APIRouter()
