from __future__ import annotations

from pathlib import Path

import pytest

from msstore.errors import InvalidArgument
from msstore.ops import Applied, MigrationError, discover, plan_down, plan_up, render


def write(tmp_path: Path, files: dict[str, str]) -> list[Path]:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return sorted(tmp_path.iterdir())


def test_discovery_orders_pairs_and_reads_directives(tmp_path: Path) -> None:
    migrations = discover(
        write(
            tmp_path,
            {
                "0002_b.sql": "-- msstore: type index\n"
                "-- msstore: requires-extension vector\nSELECT 2;",
                "0001_a.sql": "SELECT 1;",
                "0001_a.down.sql": "SELECT -1;",
                "README.md": "ignored",
            },
        )
    )
    assert [m.label for m in migrations] == ["0001_a", "0002_b"]
    assert migrations[0].down_sql == "SELECT -1;" and migrations[1].down_sql is None
    assert migrations[1].type == "index" and migrations[1].requires_extensions == ("vector",)
    assert migrations[0].history_version == "1.0.0" and len(migrations[0].checksum) == 64


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"0001_a.sql": "", "0001_b.sql": ""}, "two migrations"),
        ({"0002_x.down.sql": ""}, "without an up script"),
        ({"1_a.sql": ""}, "is not NNNN_name"),
        ({"0001_A.sql": ""}, "is not NNNN_name"),
        ({"0001_a.sql": "-- msstore: type weird\n"}, "unknown migration type"),
    ],
)
def test_bad_migration_files(tmp_path: Path, files: dict[str, str], message: str) -> None:
    with pytest.raises(MigrationError, match=message):
        discover(write(tmp_path, files))


def test_plans_and_verification(tmp_path: Path) -> None:
    ms = discover(
        write(
            tmp_path,
            {"0001_a.sql": "1", "0001_a.down.sql": "-1", "0002_b.sql": "2", "0003_c.sql": "3"},
        )
    )
    applied = [Applied(1, "a", ms[0].checksum)]
    assert [m.label for m in plan_up(ms, applied)] == ["0002_b", "0003_c"]
    assert [m.label for m in plan_up(ms, applied, target=2)] == ["0002_b"]
    assert [m.label for m in plan_down(ms, applied)] == ["0001_a"]
    with pytest.raises(MigrationError, match="no down script"):
        plan_down(ms, [*applied, Applied(2, "b", ms[1].checksum)])
    with pytest.raises(MigrationError, match="changed after it was applied"):
        plan_up(ms, [Applied(1, "a", "0" * 64)])
    with pytest.raises(MigrationError, match="its file is gone"):
        plan_up(ms, [Applied(9, "gone", "0" * 64)])
    with pytest.raises(InvalidArgument):
        plan_down(ms, applied, steps=0)


def test_placeholders() -> None:
    assert render("vector({{ embedding_dim }})", {"embedding_dim": "384"}) == "vector(384)"
    with pytest.raises(InvalidArgument, match="has no value"):
        render("{{nope}}", {})


def test_up_never_rolls_back_and_refuses_a_target_out_of_range(tmp_path: Path) -> None:
    ms = discover(write(tmp_path, {"0001_a.sql": "1", "0002_b.sql": "2", "0003_c.sql": "3"}))
    applied = [Applied(m.version, m.label.split("_")[1], m.checksum) for m in ms[:2]]
    with pytest.raises(InvalidArgument, match="below the newest applied migration"):
        plan_up(ms, applied, target=0)
    with pytest.raises(InvalidArgument, match="below the newest applied"):
        plan_up(ms, applied, target=1)
    assert plan_up(ms, applied, target=2) == []  # where it is: nothing to do
    with pytest.raises(InvalidArgument, match="past the newest migration"):
        plan_up(ms, applied, target=9)
    with pytest.raises(InvalidArgument, match="target must be an int"):
        plan_up(ms, applied, target="3")  # type: ignore[arg-type]
