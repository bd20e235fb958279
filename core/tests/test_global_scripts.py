"""Global scripts from ``[scripts]``: Mirth's order around the channel's own scripts."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from pannier import RawMessage
from pannier.config import ConfigError, load_config
from pannier.engine import Engine

from .conftest import rows
from .testkit import KitPlugin, channel_toml

CHANNEL = "11111111-2222-3333-4444-555555555555"


def with_scripts(channel: str, **scripts: str) -> str:
    """Top-level script keys go before the channel file's first table."""
    keys = "".join(f"{name} = {value!r}\n" for name, value in scripts.items())
    return keys + channel


async def test_global_preprocessor_runs_before_the_channels_own(start_engine) -> None:
    kit = KitPlugin()
    channel = with_scripts(channel_toml(), preprocessingScript="return message + '|C'")
    engine = await start_engine(
        [channel], plugins=[kit], config="[scripts]\npreprocessor = \"return message + '|G'\"\n"
    )
    result = await kit.sources[-1].dispatcher.dispatch(RawMessage("ORU|hello", {}))
    (processed,) = rows(engine, "SELECT CONTENT FROM D_MC1 WHERE CONTENT_TYPE = 2")[0]
    assert processed == "ORU|hello|G|C"
    assert result.message_id == 1


async def test_global_postprocessor_sees_the_channels_result_and_wins(start_engine) -> None:
    kit = KitPlugin()
    channel = with_scripts(
        channel_toml(response="Postprocessor"), postprocessingScript="return 'channel-post'"
    )
    config = "[scripts]\npostprocessor = \"return 'global saw ' + response\"\n"
    await start_engine([channel], plugins=[kit], config=config)
    result = await kit.sources[-1].dispatcher.dispatch(RawMessage("ORU|hello", {}))
    assert result.response is not None
    assert result.response.message == "global saw channel-post"


async def test_a_global_postprocessor_returning_none_keeps_the_channels_response(
    start_engine,
) -> None:
    kit = KitPlugin()
    channel = with_scripts(
        channel_toml(response="Postprocessor"), postprocessingScript="return 'channel-post'"
    )
    config = "[scripts]\npostprocessor = \"logger.info('seen %s', response)\"\n"
    await start_engine([channel], plugins=[kit], config=config)
    result = await kit.sources[-1].dispatcher.dispatch(RawMessage("ORU|hello", {}))
    assert result.response is not None and result.response.message == "channel-post"


async def test_global_deploy_and_undeploy_wrap_the_channels(
    nursery: trio.Nursery, start_engine, tmp_path: Path
) -> None:
    log = tmp_path / "lifecycle.log"
    kit = KitPlugin()
    channel = with_scripts(
        channel_toml(),
        deployScript=f"open({str(log)!r}, 'a').write('channel deploy' + chr(10))",
        undeployScript=f"open({str(log)!r}, 'a').write('channel undeploy' + chr(10))",
    )
    (tmp_path / "global_deploy.py").write_text(
        f"open({str(log)!r}, 'a').write('global deploy' + chr(10))\n", encoding="utf-8"
    )
    config = (
        '[scripts]\ndeploy = "global_deploy.py"\n'
        f"undeploy = \"open({str(log)!r}, 'a').write('global undeploy' + chr(10))\"\n"
    )
    engine = await start_engine([channel], plugins=[kit], config=config)
    assert log.read_text().splitlines() == ["global deploy", "channel deploy"]
    engine.request_stop()
    await engine.stopped.wait()
    assert log.read_text().splitlines() == [
        "global deploy",
        "channel deploy",
        "channel undeploy",
        "global undeploy",
    ]


def _config(tmp_path: Path, scripts: str) -> Path:
    path = tmp_path / "pannier.toml"
    path.write_text(f'[server]\ndata_dir = "var"\n[scripts]\n{scripts}', encoding="utf-8")
    return path


def test_a_missing_script_file_names_the_key(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, 'preprocessor = "scripts/pre.py"\n'), environ={})
    with pytest.raises(ConfigError, match=r"scripts\.preprocessor = 'scripts/pre\.py'.*pre\.py"):
        Engine(config)


def test_a_script_that_does_not_compile_names_the_key(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, 'deploy = "return ("\n'), environ={})
    with pytest.raises(ConfigError, match=r"scripts\.deploy"):
        Engine(config)


async def test_a_failing_global_deploy_script_stops_start_up(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, "deploy = \"raise RuntimeError('no licence')\"\n"))
    engine = Engine(config)
    with pytest.raises(BaseException) as caught:  # a group, or the error itself
        async with trio.open_nursery() as nursery:
            await nursery.start(engine.run)
    leaves = _leaves(caught.value)
    assert [type(e) for e in leaves] == [ConfigError]
    assert "scripts.deploy" in str(leaves[0]) and "no licence" in str(leaves[0])
    assert engine.stopped.is_set()


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]
