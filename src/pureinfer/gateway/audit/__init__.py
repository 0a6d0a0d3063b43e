"""The audit trail of every prompt interaction: an asynchronous batched writer with bounded
memory and a durable spill file, the `GET /audit` query, and retention."""
