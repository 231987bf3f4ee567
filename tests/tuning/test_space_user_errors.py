"""What a user's own space file gets when it names a key the base config cannot take: the error names the space
file (a list index beyond the base config's entries was reported as a bare "config key ... out of range", the same
words an override on the command line gets, so the user could not tell which of the two to mend), and a folder
given as the space is called a folder, not "not found"."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config


def test_a_list_index_beyond_the_base_configs_entries_names_the_space_file(tmp_path):
    from mmlnb_dist.tuning.space import SpaceError, load_space

    base = load_config("cpu-demo").model_dump(mode="json")
    held = len(base["fusion"]["curriculum"]["phases"])
    space = tmp_path / "phases.yaml"
    space.write_text(f"params:\n  fusion.curriculum.phases.{held + 4}.start_epoch: {{choice: [1, 2]}}\n")
    with pytest.raises(SpaceError) as err:
        load_space(space, base)
    message = str(err.value)
    assert message.startswith(f"{space}: "), message
    assert f"has {held} entries" in message and f"index {held + 4} is out of range" in message, message


def test_a_folder_given_as_the_space_is_called_a_folder(tmp_path, monkeypatch):
    from mmlnb_dist.tuning.space import SpaceError, resolve_space

    monkeypatch.chdir(tmp_path)
    (tmp_path / "spaces").mkdir()
    with pytest.raises(SpaceError, match=r"search space spaces is a folder, not a file: give a space YAML file "
                                         r"\(e\.g\. spaces/<name>\.yaml\) or a shipped space's name"):
        resolve_space("spaces")
