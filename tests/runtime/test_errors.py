"""The error hierarchy (SPEC 5): codes, categories, HTTP statuses, the wire shape, and code lookup."""

from __future__ import annotations

import inspect
import re

import pytest

import cra
from cra import errors

ALL_ERRORS = sorted(
    (obj for _, obj in inspect.getmembers(errors, inspect.isclass) if issubclass(obj, errors.CRAError)),
    key=lambda cls: cls.__name__,
)
LEAVES = [cls for cls in ALL_ERRORS if not cls.__subclasses__()]

CATEGORY_CLASS = {
    "validation": errors.ValidationError,
    "auth": errors.AuthError,
    "not_found": errors.NotFoundError,
    "conflict": errors.ConflictError,
    "policy": errors.PolicyError,
    "rate_limit": errors.RateLimitError,
    "timeout": errors.ExpiredError,
    "internal": errors.InternalError,
    "unavailable": errors.UnavailableError,
}
STATUS = {
    "validation": {400},
    "auth": {401, 403},
    "not_found": {404},
    "conflict": {409},
    "policy": {403},
    "rate_limit": {429},
    "timeout": {408, 410},
    "internal": {500},
    "unavailable": {503},
}
UPPER_SNAKE = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$")
ids = [cls.__name__ for cls in ALL_ERRORS]


def test_the_module_defines_every_category_and_many_codes() -> None:
    assert set(CATEGORY_CLASS.values()) <= set(ALL_ERRORS)
    assert len(LEAVES) >= 30


def test_every_error_class_is_exported_by_cra_errors() -> None:
    assert {cls.__name__ for cls in ALL_ERRORS} <= set(errors.__all__)


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=ids)
def test_code_is_upper_snake_case(cls: type[errors.CRAError]) -> None:
    assert UPPER_SNAKE.match(cls.code), cls.code


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=ids)
def test_category_is_one_of_the_spec_categories(cls: type[errors.CRAError]) -> None:
    assert cls.category in CATEGORY_CLASS


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=ids)
def test_http_status_matches_the_category(cls: type[errors.CRAError]) -> None:
    if cls.code == "PAYLOAD_TOO_LARGE":
        assert cls.http_status == 413
    elif cls.code == "METHOD_NOT_ALLOWED":
        assert cls.http_status == 405
    else:
        assert cls.http_status in STATUS[cls.category], (cls.code, cls.http_status)


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=ids)
def test_is_a_cra_error_and_a_subclass_of_its_category_class(cls: type[errors.CRAError]) -> None:
    assert issubclass(cls, cra.CRAError)
    assert issubclass(cls, Exception)
    if cls is not errors.CRAError:
        assert issubclass(cls, CATEGORY_CLASS[cls.category])


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=ids)
def test_error_class_of_the_code_gives_a_class_with_that_code(cls: type[errors.CRAError]) -> None:
    found = errors.error_class(cls.code)
    assert found.code == cls.code
    assert issubclass(found, errors.CRAError)


@pytest.mark.parametrize("cls", LEAVES, ids=[cls.__name__ for cls in LEAVES])
def test_error_class_round_trips_every_specific_code_to_its_own_class(cls: type[errors.CRAError]) -> None:
    assert errors.error_class(cls.code) is cls


def test_specific_codes_are_unique() -> None:
    codes = [cls.code for cls in LEAVES]
    assert len(codes) == len(set(codes))


def test_error_class_of_an_unknown_code_is_the_base_class() -> None:
    assert errors.error_class("NO_SUCH_CODE") is errors.CRAError


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=ids)
def test_to_dict_has_the_wire_shape(cls: type[errors.CRAError]) -> None:
    plain = cls("something went wrong")
    assert plain.to_dict() == {
        "code": cls.code,
        "category": cls.category,
        "message": "something went wrong",
        "recoverable": cls.recoverable,
    }
    assert isinstance(cls.recoverable, bool)
    detailed = cls("m", details={"errors": [{"pointer": "/task/goal", "message": "too long"}]})
    assert detailed.to_dict()["details"] == {"errors": [{"pointer": "/task/goal", "message": "too long"}]}
    assert list(detailed.to_dict()) == ["code", "category", "message", "recoverable", "details"]


def test_message_is_the_exception_text_and_repr_names_the_code() -> None:
    exc = errors.SessionNotFoundError("no session 'x'")
    assert str(exc) == "no session 'x'"
    assert exc.message == "no session 'x'"
    assert "SESSION_NOT_FOUND" in repr(exc)


@pytest.mark.parametrize(
    ("code", "category", "status"),
    [
        ("INVALID_REQUEST", "validation", 400),
        ("INVALID_PARAMETERS", "validation", 400),
        ("INVALID_ATLAS", "validation", 400),
        ("CLOCK_SKEW", "validation", 400),
        ("UNKNOWN_CAPABILITY", "validation", 400),
        ("UNKNOWN_ATLAS", "validation", 400),
        ("PAYLOAD_TOO_LARGE", "validation", 413),
        ("UNAUTHORIZED", "auth", 401),
        ("FORBIDDEN", "auth", 403),
        ("SESSION_NOT_FOUND", "not_found", 404),
        ("RESOLUTION_NOT_FOUND", "not_found", 404),
        ("APPROVAL_NOT_FOUND", "not_found", 404),
        ("EXECUTION_NOT_FOUND", "not_found", 404),
        ("ATLAS_NOT_FOUND", "not_found", 404),
        ("DUPLICATE_REQUEST", "conflict", 409),
        ("SESSION_ENDED", "conflict", 409),
        ("ATLAS_ALREADY_LOADED", "conflict", 409),
        ("IDEMPOTENCY_CONFLICT", "conflict", 409),
        ("APPROVAL_ALREADY_DECIDED", "conflict", 409),
        ("EXECUTION_ALREADY_COMPLETED", "conflict", 409),
        ("ACTION_NOT_ALLOWED", "policy", 403),
        ("POLICY_DENIED", "policy", 403),
        ("APPROVAL_REQUIRED", "policy", 403),
        ("APPROVAL_REJECTED", "policy", 403),
        ("RATE_LIMITED", "rate_limit", 429),
        ("BUDGET_EXCEEDED", "rate_limit", 429),
        ("RESOLUTION_EXPIRED", "timeout", 410),
        ("APPROVAL_EXPIRED", "timeout", 410),
        ("COMPLETION_TIMEOUT", "timeout", 408),
        ("STORAGE_UNAVAILABLE", "unavailable", 503),
        ("TRACE_BACKPRESSURE", "unavailable", 503),
        ("RUNTIME_CLOSED", "unavailable", 503),
        ("INTERNAL_ERROR", "internal", 500),
        ("HANDLER_ERROR", "internal", 500),
    ],
)
def test_every_documented_code_has_its_category_and_status(code: str, category: str, status: int) -> None:
    cls = errors.error_class(code)
    assert (cls.code, cls.category, cls.http_status) == (code, category, status)


def test_rate_limit_and_unavailable_errors_are_recoverable_and_validation_errors_are_not() -> None:
    assert errors.RateLimitedError.recoverable and errors.BudgetExceededError.recoverable
    assert errors.StorageUnavailableError.recoverable
    assert not errors.InvalidRequestError.recoverable
    assert not errors.RuntimeClosedError.recoverable
