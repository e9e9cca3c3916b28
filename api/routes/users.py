"""Routes: users (being written)."""

from fastapi import APIRouter

router = APIRouter()
