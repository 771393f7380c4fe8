"""`make run`'s local S3 server keeps its objects in a folder: after a SIGKILL and a
restart, they read back with their ETags, and the conditional writes the saver
relies on behave as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests import servers


def client(server: servers.Server) -> Any:
    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{server.port}",
                        region_name="us-east-1", aws_access_key_id="local",
                        aws_secret_access_key="local")


def refused(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as failed:
        call(**kwargs)
    return str(failed.value.response["Error"]["Code"])


def test_objects_survive_a_kill_and_keep_their_conditions(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = servers.s3_server(tmp_path / "one", data=data).start()
    try:
        s3 = client(first)
        s3.create_bucket(Bucket="kept")
        etag = s3.put_object(Bucket="kept", Key="t1/ns.x/head", Body=b"one",
                             IfNoneMatch="*")["ETag"]
        s3.put_object(Bucket="kept", Key="t1/seg/0/00000000", Body=b"segment")
        s3.put_object(Bucket="kept", Key="t2/head", Body=b"two")
        s3.delete_objects(Bucket="kept", Delete={"Objects": [{"Key": "t2/head"}]})
    finally:
        first.kill()

    second = servers.s3_server(tmp_path / "two", data=data).start()
    try:
        s3 = client(second)
        head = s3.get_object(Bucket="kept", Key="t1/ns.x/head")
        assert (head["Body"].read(), head["ETag"]) == (b"one", etag)
        listed = s3.list_objects_v2(Bucket="kept")["Contents"]
        assert [o["Key"] for o in listed] == ["t1/ns.x/head", "t1/seg/0/00000000"]
        assert refused(s3.put_object, Bucket="kept", Key="t1/ns.x/head", Body=b"x",
                       IfNoneMatch="*") == "PreconditionFailed"
        s3.put_object(Bucket="kept", Key="t1/ns.x/head", Body=b"new", IfMatch=etag)
        assert refused(s3.put_object, Bucket="kept", Key="t1/ns.x/head", Body=b"x",
                       IfMatch=etag) == "PreconditionFailed"
        s3.delete_object(Bucket="kept", Key="t1/seg/0/00000000")
    finally:
        second.kill()

    third = servers.s3_server(tmp_path / "three", data=data).start()
    try:
        s3 = client(third)
        assert s3.get_object(Bucket="kept", Key="t1/ns.x/head")["Body"].read() == b"new"
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="kept")["Contents"]] == [
            "t1/ns.x/head"]
    finally:
        third.kill()
