"""The paper venue: an embedded simulated exchange speaking the venue protocol over WebSocket."""
