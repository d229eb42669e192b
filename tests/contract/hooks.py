"""Schemathesis hooks for the contract run (tests/contract/schemathesis.sh).

`positive_data_acceptance` says a request the schema allows must not get a
4xx. Some rules only the running service can check: a vector's length is
the index's dimension, an SQL statement parses, a worker id exists. Each
operation lists those in its `x-runtime-rules` (error code -> rule), and
its description says them. This check is schemathesis's own, except that
a refusal with one of the operation's listed codes is not a failure. Any
other refusal of schema-valid data still is.
"""

import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import positive_data_acceptance


def _code(response):
    try:
        body = response.json()
    except Exception:
        return None
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict):
        return error.get("code")
    # /v1/validate answers a failed check with a 422 verdict, not an error.
    if body.get("valid") is False:
        return "valid: false"
    return None


@schemathesis.check
def positive_data_acceptance_beside_runtime_rules(ctx, response, case):
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        rules = case.operation.definition.raw.get("x-runtime-rules") or {}
        if _code(response) in rules:
            return None
        raise
