"""Managing a gallery from the command line through a running Flow with a write token (issue 21 item 5):
`mlcl index --id-prefix` and its count of replaced ids, `mlcl count`, `mlcl delete ID...` / `--prefix`,
`mlcl clear` (asks, or --yes); every refusal in one line."""

from __future__ import annotations

import json

import pytest

from helpers import REPO_ROOT, png_bytes, running_flow, tiny_checkpoint
from mlcl.model_id import checkpoint_id
from mlcl_cli.cli import main
from mlcl_executor.write_token import TOKEN_ENV

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TOKEN = "gallery-cli-token"


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """A folder the Flow's encoder may read files in (`image_roots`, as `mlcl serve --image-root`)."""
    return tmp_path_factory.mktemp("roots")


@pytest.fixture(scope="module")
def flow(tmp_path_factory, roots):
    token_file = tmp_path_factory.mktemp("secret") / "token"
    token_file.write_text(TOKEN + "\n")
    with running_flow(REPO_ROOT / "flows" / "flow.yml", tmp_path_factory.mktemp("ws"),
                      encoder_with={"checkpoint": str(tiny_checkpoint()), "decode_workers": 0, "image_roots": [str(roots)]},
                      gateway_with={"write_token_file": str(token_file)}) as served:
        yield served


@pytest.fixture()
def folders(tmp_path):
    """Two shops whose files share names (the case that replaced ids silently)."""
    for shop, colours in (("shop1", [(200, 30, 30), (30, 200, 30), (30, 30, 200)]), ("shop2", [(90, 90, 90), (200, 200, 30)])):
        (tmp_path / shop).mkdir()
        for i, colour in enumerate(colours):
            (tmp_path / shop / f"img{i}.png").write_bytes(png_bytes(colour))
    return tmp_path


def cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out.strip(), [line for line in err.strip().splitlines() if line]


def test_gallery_management(flow, folders, capsys, monkeypatch):
    port = ["--port", str(flow["grpc"])]
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    code, _, err = cli(capsys, "delete", "x", *port)  # a write without the token: one line, nothing else
    assert code == 2 and len(err) == 1 and "needs the Flow's write token" in err[0] and TOKEN not in err[0]

    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    code, out, _ = cli(capsys, "index", str(folders / "shop1"), "--id-prefix", "shop1/", "--no-progress", *port)
    assert code == 0 and "indexed 3 of 3 images" in out and "0 of them replaced" in out and "holds 3" in out
    code, out, _ = cli(capsys, "index", str(folders / "shop2"), "--id-prefix", "shop2/", "--no-progress", *port)
    assert code == 0 and "0 of them replaced" in out and "holds 5" in out
    code, out, _ = cli(capsys, "index", str(folders / "shop1"), "--id-prefix", "shop1/", "--no-progress", *port)
    assert code == 0 and "3 of them replaced ids already in the index" in out and "holds 5" in out

    code, out, _ = cli(capsys, "count", "--json", *port)
    assert json.loads(out) == {"count": 5, "dim": 32, "model_id": checkpoint_id(tiny_checkpoint()), "shards": {"0": 5}}
    code, out, _ = cli(capsys, "count", *port)
    assert out == f"5 documents (dim 32, model {checkpoint_id(tiny_checkpoint())})"

    code, out, err = cli(capsys, "delete", "shop1/img0.png", "shop1/nothing.png", *port)
    assert code == 1 and out == "deleted 1 of 2 ids; the index holds 4"
    assert err == ["mlcl delete: document 'shop1/nothing.png': not in the index"]
    code, out, _ = cli(capsys, "delete", "--prefix", "shop1/", *port)
    assert code == 0 and out == "deleted 2 documents whose id starts with 'shop1/'; the index holds 2"
    code, _, err = cli(capsys, "delete", "a", "--prefix", "b", *port)
    assert code == 2 and len(err) == 1 and "not both" in err[0]

    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    code, _, err = cli(capsys, "clear", *port)  # no terminal to ask: refused, nothing deleted
    assert code == 2 and err == [f"mlcl clear: this deletes all 2 documents of the index at localhost:{flow['grpc']}: add --yes"]
    code, out, _ = cli(capsys, "clear", "--yes", *port)
    assert code == 0 and out.startswith("cleared: deleted 2 documents; the index holds 0")
    code, out, _ = cli(capsys, "count", *port)
    assert out == "0 documents (dim 32, model not recorded)"  # an empty index takes any model


def test_no_flow_is_one_line(capsys):
    from mlcl_cli.flows import free_port

    for command in (["count"], ["delete", "x"], ["clear", "--yes"]):
        code, _, err = cli(capsys, *command, "--port", str(free_port()))
        assert code == 2 and len(err) == 1 and "no Flow at" in err[0]


def test_index_by_path(flow, folders, roots, capsys, monkeypatch):
    """`--by-path`: the Flow reads the files itself; the vectors are those of the bytes; a folder the Flow may not
    read is refused in one line before anything is sent."""
    import shutil

    from docarray import DocList

    from mlcl_cli.client import grpc_client
    from mlcl_executor.schemas import QueryDoc

    port = ["--port", str(flow["grpc"])]
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    code, _, err = cli(capsys, "index", str(folders / "shop1"), "--by-path", "--no-progress", *port)
    assert code == 2 and len(err) == 1 and "--image-root" in err[0] and "outside the allowed image roots" in err[0], err
    assert cli(capsys, "count", *port)[1].startswith("0 documents")

    shop = shutil.copytree(folders / "shop1", roots / "shop1")
    (shop / "img0.png").write_bytes(b"not an image")  # the first file: a bad image is reported, not a refusal
    code, out, err = cli(capsys, "index", str(shop), "--id-prefix", "path/", "--by-path", "--no-progress", *port)
    assert code == 1 and "indexed 2 of 3 images" in out and len(err) == 1 and "path/img0.png" in err[0], (out, err)
    assert cli(capsys, "clear", "--yes", *port)[0] == 0
    shutil.copy(folders / "shop1" / "img0.png", shop / "img0.png")
    code, out, _ = cli(capsys, "index", str(shop), "--id-prefix", "bytes/", "--no-progress", *port)
    assert code == 0 and "indexed 3 of 3 images" in out
    code, out, err = cli(capsys, "index", str(shop), "--id-prefix", "path/", "--by-path", "--no-progress", *port)
    assert code == 0 and "indexed 3 of 3 images" in out and "holds 6" in out, (out, err)
    answer = grpc_client("localhost", flow["grpc"]).post(
        "/search", DocList[QueryDoc]([QueryDoc(text="a red circle")]), parameters={"limit": 6}, return_type=DocList[QueryDoc])
    scores = {m.id: s for m, s in zip(answer[0].matches, answer[0].scores)}
    for name in ("img0.png", "img1.png", "img2.png"):
        assert scores[f"path/{name}"] == pytest.approx(scores[f"bytes/{name}"], abs=1e-5)
    assert cli(capsys, "clear", "--yes", *port)[0] == 0
