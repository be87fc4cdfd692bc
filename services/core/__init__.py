"""Code shared by the query service and the indexer: settings, domain, embedding, engines, storage."""
