"""A failure is described by its error's type and where it was raised, never its text."""

from __future__ import annotations

import pytest

from custseg.failures import describe_error, error_site
from custseg.layout import parse_upload_key


def test_describe_error_names_type_and_site_in_the_project_not_the_message() -> None:
    with pytest.raises(ValueError) as caught:
        parse_upload_key("incoming/Alice Smith.csv")  # its message quotes the key
    assert "Alice" in str(caught.value)
    described = describe_error(caught.value)
    assert described.startswith("LayoutError at custseg/layout.py:")
    assert described.endswith(" in parse_upload_key")
    assert "Alice" not in described


def test_an_error_raised_outside_the_project_is_placed_in_its_innermost_frame() -> None:
    def fail() -> None:
        raise KeyError("Alice")

    with pytest.raises(KeyError) as caught:
        fail()
    assert error_site(caught.value).startswith("test_failures.py:")
    assert error_site(caught.value).endswith(" in fail")
    assert error_site(RuntimeError("never raised")) == "unknown"
