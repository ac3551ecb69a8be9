"""The queue model: the BullMQ facade, job snapshots and views, policies, DLQ, indexes."""
