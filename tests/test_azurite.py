"""The Azurite stand-in's process layouts: all three services in one process, or each in its own."""

from __future__ import annotations

import uuid

import pytest
from azure.data.tables import TableClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from standins.azurite import Azurite


def _round_trip_each_service(azurite: Azurite) -> None:
    name = f"t{uuid.uuid4().hex[:8]}"
    table = TableClient.from_connection_string(azurite.connection_string, name)
    table.create_table()
    table.create_entity({"PartitionKey": "p", "RowKey": "r", "Value": 1})
    assert table.get_entity("p", "r")["Value"] == 1
    queue = QueueClient.from_connection_string(azurite.connection_string, f"q{name}")
    queue.create_queue()
    queue.send_message("hello")
    [received] = list(queue.receive_messages(max_messages=1))
    assert received.content == "hello"
    queue.delete_message(received)
    assert queue.get_queue_properties().approximate_message_count == 0
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    blobs.create_container(f"c{name}").upload_blob("b", b"bytes")
    assert blobs.get_blob_client(f"c{name}", "b").download_blob().readall() == b"bytes"


@pytest.mark.parametrize("sweep_queue", [True, False], ids=["swept queue", "unswept queue"])
def test_each_service_can_run_in_a_process_of_its_own(sweep_queue: bool) -> None:
    azurite = Azurite(separate=True, sweep_queue=sweep_queue)
    try:
        _round_trip_each_service(azurite)
        assert len({process.pid for process in azurite._processes}) == 3
    finally:
        azurite.close()
    assert all(process.poll() is not None for process in azurite._processes)


def test_one_process_serves_all_three_services_by_default(azurite: Azurite) -> None:
    _round_trip_each_service(azurite)
    assert len(azurite._processes) == 1
