"""Routes: tickets (being written)."""

from fastapi import APIRouter

router = APIRouter()
