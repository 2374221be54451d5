"""HTTP endpoints: SHEP SOAP, the provider pull API, operations."""
