"""The gateway's batching (mlcl_executor/request_batching.py): concurrent requests merged, answers split back.

A fake Flow stands in for jina's request handler: it records the requests it is sent and answers each
document with its id and its position in the merged request, so a test sees what was merged and that
every client gets its own documents back, in order, under its own request id.
"""

from __future__ import annotations

import asyncio
from typing import Any, List, Tuple

import pytest
from docarray import DocList

from mlcl_executor.request_batching import RequestBatcher, merge_requests
from mlcl_executor.schemas import QueryDoc


def request(ids: List[str], endpoint: str = "/search", parameters: Any = None, text: str = "t") -> Any:
    from jina.types.request.data import DataRequest

    req = DataRequest()
    req.data.docs = DocList[QueryDoc]([QueryDoc(id=i, text=f"{text}:{i}") for i in ids])
    req.header.exec_endpoint = endpoint
    req.parameters = parameters if parameters is not None else {"limit": 10}
    return DataRequest(req.proto.SerializeToString())  # as it arrives: serialised


class FakeFlow:
    """jina's request handler: (future of the answer, None); answers after `delay` s, or fails."""

    def __init__(self, delay: float = 0.01, fail: BaseException = None, drop_one: bool = False) -> None:
        self.sent: List[Any] = []
        self.delay, self.fail, self.drop_one = delay, fail, drop_one

    def __call__(self, request: Any, return_type: Any = None) -> Tuple[Any, Any]:
        self.sent.append(request)
        return asyncio.ensure_future(self._answer(request)), None

    async def _answer(self, request: Any) -> Any:
        from jina.types.request.data import DataRequest

        await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        answer = DataRequest(request.proto.SerializeToString())
        docs = answer.proto_with_data.data.docs.docs
        for position, doc in enumerate(docs):
            doc.data["error"].text = f"{doc.data['id'].text}@{position}"  # what the 'Flow' saw
        if self.drop_one:
            del docs[-1]
        return answer


def answers_of(results: List[Any]) -> List[List[Tuple[str, str]]]:
    out = []
    for answer in results:
        docs = answer.proto_with_data.data.docs.docs
        out.append([(d.data["id"].text, d.data["error"].text) for d in docs])
    return out


async def send_all(batcher: RequestBatcher, requests: List[Any]) -> List[Any]:
    futures = [batcher(request=r, return_type=DocList[QueryDoc])[0] for r in requests]
    return list(await asyncio.gather(*futures, return_exceptions=True))


def test_a_lone_request_goes_at_once_unchanged():
    flow = FakeFlow()
    batcher = RequestBatcher(flow)
    req = request(["a"])
    [answer] = asyncio.run(send_all(batcher, [req]))
    assert flow.sent == [req]  # the very request: nothing merged, nothing copied
    assert answers_of([answer]) == [[("a", "a@0")]]


def test_concurrent_requests_are_merged_and_each_client_gets_its_own_documents_back():
    flow = FakeFlow()
    batcher = RequestBatcher(flow, max_in_flight=1)
    reqs = [request([f"q{i}", f"r{i}"]) for i in range(5)]
    results = asyncio.run(send_all(batcher, reqs))
    assert len(flow.sent) == 1  # all five arrived in one event-loop turn: one request through the Flow
    assert len(flow.sent[0].proto_with_data.data.docs.docs) == 10
    assert [a.header.request_id for a in results] == [r.header.request_id for r in reqs]
    assert answers_of(results) == [[(f"q{i}", f"q{i}@{2 * i}"), (f"r{i}", f"r{i}@{2 * i + 1}")] for i in range(5)]


def test_batches_grow_while_earlier_ones_are_in_the_flow():
    async def scenario(flow: FakeFlow, batcher: RequestBatcher) -> List[Any]:
        first = batcher(request=request(["first"]), return_type=None)[0]
        await asyncio.sleep(0.005)  # `first` is in the Flow now; the next ones wait for it
        rest = [batcher(request=request([f"q{i}"]), return_type=None)[0] for i in range(6)]
        return list(await asyncio.gather(first, *rest))

    flow = FakeFlow(delay=0.05)
    batcher = RequestBatcher(flow, max_in_flight=1)
    results = asyncio.run(scenario(flow, batcher))
    assert [len(r.proto_with_data.data.docs.docs) for r in flow.sent] == [1, 6]
    assert answers_of(results)[1:] == [[(f"q{i}", f"q{i}@{i}")] for i in range(6)]


def test_max_docs_caps_a_merged_request():
    flow = FakeFlow()
    batcher = RequestBatcher(flow, max_docs=4, max_in_flight=8)
    results = asyncio.run(send_all(batcher, [request([f"q{i}"]) for i in range(10)]))
    assert [len(r.proto_with_data.data.docs.docs) for r in flow.sent] == [4, 4, 2]
    assert answers_of(results)[9] == [("q9", "q9@1")]


def test_only_equal_parameters_and_the_batched_endpoints_are_merged():
    flow = FakeFlow()
    batcher = RequestBatcher(flow, max_in_flight=8)
    reqs = [request(["a"]), request(["b"], parameters={"limit": 5}), request(["c"]), request(["d"], endpoint="/index")]
    results = asyncio.run(send_all(batcher, reqs))
    sent = sorted(tuple(d.data["id"].text for d in r.proto_with_data.data.docs.docs) for r in flow.sent)
    assert sent == [("a", "c"), ("b",), ("d",)]
    assert [a[0][0] for a in answers_of(results)] == ["a", "b", "c", "d"]


def test_ids_that_repeat_across_requests_are_kept_apart_and_restored():
    flow = FakeFlow()
    batcher = RequestBatcher(flow, max_in_flight=1)
    results = asyncio.run(send_all(batcher, [request(["x", "y"]), request(["x"]), request(["z"])]))
    seen = [d.data["id"].text for d in flow.sent[0].proto_with_data.data.docs.docs]
    assert len(set(seen)) == len(seen)  # the Flow never saw two documents with one id
    assert [[i for i, _ in a] for a in answers_of(results)] == [["x", "y"], ["x"], ["z"]]


def test_a_failed_merged_request_fails_every_client_of_it_and_the_next_batch_still_goes():
    flow = FakeFlow(fail=ConnectionError("encoder gone"))
    batcher = RequestBatcher(flow, max_in_flight=1)
    results = asyncio.run(send_all(batcher, [request(["a"]), request(["b"])]))
    assert all(isinstance(r, ConnectionError) for r in results)
    flow.fail = None
    [answer] = asyncio.run(send_all(batcher, [request(["c"])]))
    assert answers_of([answer]) == [[("c", "c@0")]]


def test_an_answer_with_fewer_documents_is_an_error_not_a_wrong_split():
    flow = FakeFlow(drop_one=True)
    batcher = RequestBatcher(flow, max_in_flight=1)
    results = asyncio.run(send_all(batcher, [request(["a"]), request(["b"])]))
    assert all(isinstance(r, RuntimeError) and "number of documents" in str(r) for r in results)


def test_merge_keeps_order_and_parameters():
    merged, renamed = merge_requests([request(["a"], parameters={"limit": 3}), request(["b", "c"], parameters={"limit": 3})], "/search")
    assert [d.data["id"].text for d in merged.proto_with_data.data.docs.docs] == ["a", "b", "c"]
    assert merged.parameters == {"limit": 3} and renamed == [None, None]


@pytest.mark.parametrize("bad", [dict(max_docs=0), dict(max_in_flight=0)])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        RequestBatcher(FakeFlow(), **bad)
