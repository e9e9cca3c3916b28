"""Routes: categories (being written)."""

from fastapi import APIRouter

router = APIRouter()
