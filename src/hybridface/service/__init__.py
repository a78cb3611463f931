"""The REST service: FastAPI app (`app.create_app`), API-key auth, limits, metrics, schemas."""
