from pathlib import Path

import pandas as pd
import pytest

from cdiscount.errors import InputError
from cdiscount.taxonomy import build_taxonomy, load_taxonomy, read_category_names


def test_real_taxonomy_levels_and_order(shared: Path) -> None:
    tax = load_taxonomy(shared / "category_names.csv")
    assert len(tax) == 5270
    assert tax["level1"].nunique() == 49
    assert tax["level1_idx"].max() == 48
    assert tax["level2"].nunique() == 483  # level-2 names, as Kaggle counts them
    # a level-2 node is a (level1, level2) pair: 3 level-2 names sit under two level-1 groups
    assert tax["level2_idx"].max() + 1 == tax[["level1", "level2"]].drop_duplicates().shape[0] == 486
    assert tax["idx"].tolist() == list(range(5270))
    key = list(zip(tax["level1"], tax["level2"], tax["level3"], tax["category_id"]))
    assert key == sorted(key)
    # level-3 names repeat under different ids; the index is keyed by id
    assert tax["level3"].duplicated().sum() == 7
    assert tax["category_id"].is_unique


def test_trailing_spaces_are_kept(shared: Path) -> None:
    names = read_category_names(shared / "category_names.csv")
    padded = sum((names[c] != names[c].str.strip()).sum() for c in names.columns[1:])
    assert padded == 88  # 87 trailing spaces and one leading space, all kept verbatim
    row = names.loc[names["category_id"] == 1000014019].iloc[0]
    assert row["category_level3"] == "ANIMAUX "


def test_level2_index_separates_same_name_under_other_level1() -> None:
    names = pd.DataFrame({
        "category_id": [1, 2, 3],
        "category_level1": ["A", "B", "B"],
        "category_level2": ["X", "X", "Y"],
        "category_level3": ["p", "p", "q"],
    })
    tax = build_taxonomy(names)
    assert tax["level2_idx"].tolist() == [0, 1, 2]
    assert tax["level1_idx"].tolist() == [0, 1, 1]


@pytest.mark.parametrize("content, needle", [
    ("id,a,b,c\n1,x,y,z\n", "expected columns"),
    ("category_id,category_level1,category_level2,category_level3\nabc,x,y,z\n", "not an integer"),
    ("category_id,category_level1,category_level2,category_level3\n1,x,y,z\n1,x,y,w\n", "appears twice"),
])
def test_bad_category_file_is_a_clear_error(tmp_path: Path, content: str, needle: str) -> None:
    p = tmp_path / "category_names.csv"
    p.write_text(content)
    with pytest.raises(InputError, match=needle) as e:
        read_category_names(p)
    assert str(p) in str(e.value)
