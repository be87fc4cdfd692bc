"""Request and response models of the HTTP API, one module per resource; `common` holds the shared ones."""
