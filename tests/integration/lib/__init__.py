"""Helpers for the integration tests: clients (real S3 clients as subprocesses),
boto_driver (boto3 of another interpreter), s3util (buckets, names, payloads)."""
