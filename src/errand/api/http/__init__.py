"""HTTP plumbing: body reading, problem documents, responses, the uvicorn protocol."""
