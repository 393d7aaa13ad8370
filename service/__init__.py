"""The translation service: FastAPI app, cross-request batcher, settings (`create_app`)."""
