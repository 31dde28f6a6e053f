"""`python -m api`: serve the HTTP API on SETTLEPAY_API_HOST:SETTLEPAY_API_PORT."""

from api.server import serve

serve()
