"""Routes: codec (being written)."""

from fastapi import APIRouter

router = APIRouter()
