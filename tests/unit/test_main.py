"""app/main.py: the outside errors the API answers as 503 dependency_unavailable."""


def test_every_s3_failure_maps_to_storage_unavailable() -> None:
    """botocore's connection errors and S3's error answers, as the API meets them, are all 503s."""
    from boto3.exceptions import S3UploadFailedError
    from botocore import exceptions as bc

    from app.main import DEPENDENCY_ERRORS

    url = "http://s3.internal:9000/bucket"
    raised = [
        bc.EndpointConnectionError(endpoint_url=url),
        bc.ConnectTimeoutError(endpoint_url=url),
        bc.ReadTimeoutError(endpoint_url=url),
        bc.ConnectionClosedError(endpoint_url=url),
        bc.ConnectionError(error="refused"),
        bc.NoCredentialsError(),
        *(
            bc.ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")
            for code, status in [
                ("SlowDown", 503),
                ("InternalError", 500),
                ("NoSuchBucket", 404),
                ("AccessDenied", 403),
                ("InvalidAccessKeyId", 403),
            ]
        ),
        S3UploadFailedError("Failed to upload x to bucket/key: SlowDown"),
    ]
    for exc in raised:
        assert next((DEPENDENCY_ERRORS[t] for t in type(exc).__mro__ if t in DEPENDENCY_ERRORS), None) == (
            "Object storage"
        ), type(exc)
