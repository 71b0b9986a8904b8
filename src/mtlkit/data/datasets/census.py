"""UCI Census-Income (KDD), the benchmark of the MMoE (KDD 2018) and PLE (RecSys 2020) papers.

Tasks follow the MMoE paper: group 1 = income > 50K (main) + never married; group 2 =
education ≥ college (main) + never married. "College" means a completed college degree
(associate, bachelor, master, professional school or doctorate); "some college but no degree"
counts as below college. The label source columns (education, marital status, income) are
removed from the inputs, as is the survey's instance weight. The 99,762 test rows are split
1:1 into validation and test with a fixed seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mtlkit.data.datasets import RawSplits, locate_file, register_dataset
from mtlkit.data.datasets._files import fetch, sha256_file
from mtlkit.data.readers import ReadOptions, read_table
from mtlkit.data.schema import FeatureSpec, Schema, TaskSpec
from mtlkit.errors import DataError

SUBDIR = "census-income"
BASE_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/census-income-mld/"
FILES = {"train": "census-income.data.gz", "test": "census-income.test.gz"}
#: SHA-256 of the gzip files as published, and of their uncompressed content
SHA256_GZ = {
    "census-income.data.gz": "3a8265c042a3a804761b804e3fbd2b44d26780fc11848cdc499a439b6ec209c2",
    "census-income.test.gz": "5ac4cacd3ca9f1ecb10de1a0a41e4ac68fdc419e3fec190f5c0c6cc03b2ea659",
}
SHA256_RAW = {
    "census-income.data.gz": "3676a81db7d3528f3f8b9f3c699d0f0aa28db45e6e994fa0b8ed38327539ee86",
    "census-income.test.gz": "98402b1ab879573d0a7f38a699a40258080e25e33d3401e7bf9c96d3fa0fab8c",
}

COLUMNS = [
    "age", "class_of_worker", "industry_code", "occupation_code", "education", "wage_per_hour",
    "enroll_in_edu_inst_last_wk", "marital_status", "major_industry_code",
    "major_occupation_code", "race", "hispanic_origin", "sex", "member_of_labor_union",
    "reason_for_unemployment", "full_or_part_time_employment_stat", "capital_gains",
    "capital_losses", "dividends_from_stocks", "tax_filer_status",
    "region_of_previous_residence", "state_of_previous_residence",
    "detailed_household_and_family_stat", "detailed_household_summary_in_household",
    "instance_weight", "migration_code_change_in_msa", "migration_code_change_in_reg",
    "migration_code_move_within_reg", "live_in_this_house_1_year_ago",
    "migration_prev_res_in_sunbelt", "num_persons_worked_for_employer",
    "family_members_under_18", "country_of_birth_father", "country_of_birth_mother",
    "country_of_birth_self", "citizenship", "own_business_or_self_employed",
    "fill_inc_questionnaire_for_veterans_admin", "veterans_benefits", "weeks_worked_in_year",
    "year", "income",
]
NUMERIC = {
    "age": "none", "wage_per_hour": "log1p", "capital_gains": "log1p", "capital_losses": "log1p",
    "dividends_from_stocks": "log1p", "num_persons_worked_for_employer": "none",
    "weeks_worked_in_year": "none",
}
LABEL_SOURCES = {"education", "marital_status", "income"}
NOT_FEATURES = LABEL_SOURCES | {"instance_weight"}
COLLEGE = [
    "Associates degree-academic program", "Associates degree-occup /vocational",
    "Bachelors degree(BA AB BS)", "Masters degree(MA MS MEng MEd MSW MBA)",
    "Prof school degree (MD DDS DVM LLB JD)", "Doctorate degree(PhD EdD)",
]
READ_OPTIONS = ReadOptions(
    header=False, names=COLUMNS, skipinitialspace=True, na_values=[]
)

TASKS = {
    "income": TaskSpec(
        name="income", column="income", positive_values=["50000+."], negative_values=["- 50000."]
    ),
    "marital": TaskSpec(name="marital", column="marital_status", positive_values=["Never married"]),
    "education": TaskSpec(name="education", column="education", positive_values=COLLEGE),
}
GROUPS = {1: ["income", "marital"], 2: ["education", "marital"]}


def census_schema(group: int = 1) -> Schema:
    if group not in GROUPS:
        raise ValueError(f"census-income group must be 1 or 2, got {group}")
    features = [
        FeatureSpec(name=c, kind="numeric", transform=NUMERIC[c])
        if c in NUMERIC
        else FeatureSpec(name=c, kind="categorical")
        for c in COLUMNS
        if c not in NOT_FEATURES
    ]
    return Schema(features=features, tasks=[TASKS[t] for t in GROUPS[group]])


def verify(path: Path) -> None:
    """Check a census file against its published SHA-256 (gzip or uncompressed copy)."""
    name = path.name if path.suffix == ".gz" else path.name + ".gz"
    if path.suffix == ".gz":
        ok = sha256_file(path) == SHA256_GZ[name]
        if not ok:  # a re-compressed copy of the same content is fine
            try:
                ok = sha256_file(path, decompress=True) == SHA256_RAW[name]
            except (OSError, EOFError):
                ok = False
    else:
        ok = sha256_file(path) == SHA256_RAW[name]
    if not ok:
        raise DataError(
            f"{path}: SHA-256 does not match the published file; it may be truncated or altered. "
            f"Download it again from {BASE_URL}{name} (or pass verify: false to skip this check)"
        )


def find_file(split: str, data_dir: str | None) -> Path:
    name = FILES[split]
    return locate_file(
        SUBDIR, data_dir, [name, name.removesuffix(".gz")], f"census-income {split} file {name!r}",
        f"Download it from {BASE_URL}{name} (mtlkit.data.datasets.census.download(DIR)) or "
        "point MTLKIT_DATA_DIR / data.data_dir at the folder holding census-income/")


def download(data_dir: str | Path) -> list[Path]:
    """Fetch both files from UCI into ``data_dir/census-income`` and verify their checksums."""
    target = Path(data_dir) / SUBDIR
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in FILES.values():
        path = target / name
        fetch(BASE_URL + name, path)
        verify(path)
        paths.append(path)
    return paths


def read_census(path: Path, check: bool = True) -> pd.DataFrame:
    if check:
        verify(path)
    return read_table(path, READ_OPTIONS)


@register_dataset("census-income")
def census_income(
    data_dir: str | None = None, group: int = 1, split_seed: int = 0, verify: bool = True,
    train_fraction: float = 1.0,
) -> RawSplits:
    """Census-Income (KDD) with the MMoE paper's task groups and 1:1 valid/test split."""
    train = read_census(find_file("train", data_dir), verify)
    test_full = read_census(find_file("test", data_dir), verify)
    if train_fraction < 1.0:
        keep = np.random.default_rng(split_seed).random(len(train)) < train_fraction
        train = train[keep]
    order = np.random.default_rng(split_seed).permutation(len(test_full))
    half = len(order) // 2
    valid = test_full.iloc[np.sort(order[:half])]
    test = test_full.iloc[np.sort(order[half:])]
    for frame, label in ((valid, "valid"), (test, "test")):
        frame.attrs["source"] = f"{test_full.attrs['source']} ({label} half)"
    return RawSplits(
        census_schema(group), train, valid, test, READ_OPTIONS, f"Census-Income group {group}"
    )
