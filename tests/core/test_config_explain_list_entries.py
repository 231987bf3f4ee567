"""`config explain` of a list entry (`fusion.curriculum.phases.0`) lists the entry's settings.

It printed one blank line and exited 0: a key through a list index matched no line. An entry of a list of sections
now shows each of its fields with the config's value, the default entry's beside it where they differ, and the
field's documentation; an entry of a list of values shows that value; an index past the end is refused naming the
entries there are."""
from __future__ import annotations

from mmlnb_dist.cli import main


def _explain(capsys, *args):
    code = main(["config", "explain", *args])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_a_list_entry_of_sections_lists_its_fields(capsys):
    code, lines, _ = _explain(capsys, "--config", "cpu-demo", "fusion.curriculum.phases.1")
    assert code == 0
    assert [line.split(" = ")[0] for line in lines] == [
        "fusion.curriculum.phases.1.start_epoch", "fusion.curriculum.phases.1.train_image_encoder",
        "fusion.curriculum.phases.1.train_text_encoder"], lines
    assert lines[0].startswith("fusion.curriculum.phases.1.start_epoch = 3  (default 50; from cpu-demo)  # First epoch"), lines
    assert lines[1].startswith("fusion.curriculum.phases.1.train_image_encoder = true  (from cpu-demo)  # "), lines


def test_one_field_of_a_list_entry_and_an_override_of_it(capsys):
    code, lines, _ = _explain(capsys, "fusion.curriculum.phases.2.start_epoch",
                              "fusion.curriculum.phases.2.start_epoch=7")
    assert code == 0
    assert len(lines) == 1 and lines[0].startswith("fusion.curriculum.phases.2.start_epoch = 7  (default 100; from override)  # ")


def test_an_entry_of_a_list_of_values(capsys):
    code, lines, _ = _explain(capsys, "--config", "clip-demo", "clip.model.head_widths.0")
    # one entry explained (its field's docstring may go on over more lines)
    assert code == 0 and lines[0].startswith("clip.model.head_widths.0 = 64 "), lines
    assert [line for line in lines if line.startswith("clip.")] == lines[:1], lines


def test_an_index_past_the_end_is_refused_naming_the_entries(capsys):
    code, lines, err = _explain(capsys, "fusion.curriculum.phases.5")
    assert code == 2 and not lines
    assert "fusion.curriculum.phases" in err and "3 entries" in err, err
