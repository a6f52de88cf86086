"""Request validation: bodies of /predict and /v2/.../infer become a 2-D array of rows.

An array-format model gets float64 rows (the fast path); a DataFrame-format model gets an
object array of values checked per column kind (number, integer, boolean, category, text,
datetime), with NaN for a gap, that `ServedModel.frame` turns into the training dtypes.

Every client mistake raises `ClientError` with a 4xx status and a message that says what
is wrong and where (row, feature). Nothing here may raise anything else for any input.
"""

from __future__ import annotations

import difflib
import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mlcd.serve.model import GAP, ServedModel, feature_summary

_NUMBER_TYPES = {int, float}
_NONE = type(None)
_NAN = GAP  # the one object every gap of a DataFrame-format row is (model._column)
MAX_ROWS = 100_000

V2_NUMERIC = {
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
}


V2_TENSOR = "input-0"  # the name of the one [N, F] input (GET /v2/models/{name} lists it)

# What JSON `data` each v2 datatype takes (null is a gap, checked per column later) and the
# range of the integer and the narrow float datatypes.
_V2_JSON_TYPES = {
    "BYTES": (frozenset({str, _NONE}), "strings"),
    "BOOL": (frozenset({bool, _NONE}), "true or false"),
    **{t: (frozenset({int, float, _NONE}), "numbers") for t in ("FP16", "FP32", "FP64")},
    **{
        t: (frozenset({int, _NONE}), "integers")
        for t in V2_NUMERIC - {"BOOL", "FP16", "FP32", "FP64"}
    },
}
_V2_INT_RANGE = {
    **{f"INT{b}": (-(2 ** (b - 1)), 2 ** (b - 1) - 1) for b in (8, 16, 32, 64)},
    **{f"UINT{b}": (0, 2**b - 1) for b in (8, 16, 32, 64)},
}
_V2_FLOAT_MAX = {"FP16": 65504.0, "FP32": float(np.finfo(np.float32).max)}


class ClientError(Exception):
    """A client's mistake: a 4xx status with a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Parsed:
    """A validated request: rows in model column order."""

    rows: NDArray[Any]
    kind: str  # "instances" | "records" | "v2"
    v2_id: str | None = None
    v2_outputs: list[str] | None = None
    unknown: dict[int, int] | None = None  # feature index -> values not seen at training
    v2_binary: set[str] = field(default_factory=set)  # outputs to send as binary data


def parse_json(body: bytes) -> Any:
    """The JSON document of a body, or a 400 that says why not."""
    if not body or not body.strip():
        raise ClientError(400, 'empty body: send JSON such as {"instances": [[1.0, 2.0, …]]}')
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ClientError(400, f"the body is not UTF-8 text (byte {exc.start})") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClientError(
            400, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except (ValueError, RecursionError) as exc:  # e.g. integers with too many digits, deep nesting
        raise ClientError(400, f"malformed JSON: {str(exc)[:200] or type(exc).__name__}") from exc


def _describe(value: Any) -> str:
    text = json.dumps(value) if _json_ok(value) else repr(value)
    return text if len(text) <= 40 else text[:37] + "…"


def _json_ok(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def _where(model: ServedModel, row: int, col: int) -> str:
    return f"row {row}, feature `{model.features[col].name}` (column {col})"


def _bad_value(model: ServedModel, row: int, col: int, value: Any) -> ClientError:
    feature = model.features[col]
    where = _where(model, row, col)
    if value is None:
        return ClientError(
            422,
            f"{where}: null (a missing value), and this model cannot take one in this column",
        )
    got = (
        f"text {_describe(value)}"
        if isinstance(value, str)
        else f"{type(value).__name__} {_describe(value)}"
    )
    if feature.kind == "integer" and type(value) is float:
        return ClientError(422, f"{where}: expected an integer, got {_describe(value)}")
    if feature.numeric:
        return ClientError(422, f"{where}: expected a number, got {got}")
    if feature.kind == "boolean":
        return ClientError(422, f"{where}: expected true or false, got {got}")
    if feature.kind == "datetime" and isinstance(value, str):
        return ClientError(422, f"{where}: expected an ISO 8601 date such as 2024-01-31, got {got}")
    return ClientError(422, f"{where}: expected text, got {got}")


def _check_numeric_row(null_ok: tuple[bool, ...], model: ServedModel, index: int, row: Any) -> None:
    for col, value in enumerate(row):
        if type(value) not in _NUMBER_TYPES and not (value is None and null_ok[col]):
            raise _bad_value(model, index, col, value)


def _check_typed_row(model: ServedModel, index: int, row: Sequence[Any]) -> None:
    """A row of an array-format model with integer or boolean columns."""
    for col, (feature, value) in enumerate(zip(model.features, row, strict=True)):
        kind = type(value)
        if value is None:
            if not feature.accepts_null:
                raise _bad_value(model, index, col, value)
        elif feature.kind == "boolean":
            if kind is not bool:
                raise _bad_value(model, index, col, value)
        elif kind not in _NUMBER_TYPES or (
            feature.kind == "integer" and kind is float and not value.is_integer()
        ):
            raise _bad_value(model, index, col, value)


def _non_finite(model: ServedModel, row: int, col: int, value: float) -> ClientError:
    name = model.features[col].name
    what = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if math.isnan(value):
        return ClientError(
            422,
            f"row {row}, feature `{name}` (column {col}): NaN, and this model cannot take "
            "a missing value in this column",
        )
    return ClientError(
        422, f"row {row}, feature `{name}` (column {col}): {what} is not a finite number"
    )


def _is_date(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _typed_value(model: ServedModel, index: int, col: int, value: Any) -> Any:
    """One value of a DataFrame-format model, validated for its column; NaN for a gap."""
    feature = model.features[col]
    kind = feature.kind
    vtype = type(value)
    if value is None or (vtype is float and math.isnan(value)):
        if feature.accepts_null:
            return _NAN
        if value is None:
            raise _bad_value(model, index, col, value)
        raise _non_finite(model, index, col, value)
    if kind in {"number", "integer"}:
        if vtype is int:
            if not -1e308 < value < 1e308:
                raise ClientError(422, f"{_where(model, index, col)}: the number is too large")
            return value
        if vtype is not float or (kind == "integer" and not value.is_integer()):
            if vtype is float and math.isinf(value):
                raise _non_finite(model, index, col, value)
            raise _bad_value(model, index, col, value)
        if math.isinf(value):
            raise _non_finite(model, index, col, value)
        return value
    if kind == "boolean":
        if vtype is not bool:
            raise _bad_value(model, index, col, value)
        return value
    if vtype is not str or (kind == "datetime" and not _is_date(value)):
        raise _bad_value(model, index, col, value)
    return value


def _to_objects(model: ServedModel, rows: Sequence[Sequence[Any]]) -> tuple[NDArray[Any], Any]:
    """Validated rows of a DataFrame-format model, and unseen categories per feature."""
    width = model.n_features
    checked = [
        [_typed_value(model, index, col, value) for col, value in enumerate(row)]
        for index, row in enumerate(rows)
    ]
    array = np.empty((len(rows), width), dtype=object)
    array[:] = checked
    unknown: dict[int, int] = {}
    for col in model.category_features:
        known = model.category_sets[col]
        count = sum(1 for v in array[:, col] if v is not _NAN and v not in known)
        if count:
            unknown[col] = count
    return array, unknown or None


def _record_to_row(model: ServedModel, index: int, record: dict[Any, Any]) -> list[Any]:
    names = model.feature_index
    if len(record) != len(names) or any(k not in names for k in record):
        unknown = [str(k) for k in record if k not in names]
        missing = [n for n in model.feature_names if n not in record]
        parts = []
        if unknown:
            hint = ""
            close = difflib.get_close_matches(unknown[0], model.feature_names, n=1, cutoff=0.6)
            if close:
                hint = f" (did you mean `{close[0]}`?)"
            parts.append(f"unknown feature(s): {feature_summary(unknown)}{hint}")
        if missing:
            parts.append(f"missing feature(s): {feature_summary(missing)}")
        raise ClientError(422, f"row {index}: " + "; ".join(parts))
    return [record[n] for n in model.feature_names]


def _rows_from_list(model: ServedModel, items: list[Any], kind: str) -> Parsed:
    if not items:
        raise ClientError(422, f"`{kind}` is empty: send at least one row")
    if len(items) > MAX_ROWS:
        raise ClientError(413, f"{len(items)} rows in one request; at most {MAX_ROWS}")
    n = model.n_features
    rows: list[Sequence[Any]] = []
    for index, item in enumerate(items):
        if isinstance(item, list):
            if len(item) != n:
                raise ClientError(
                    422,
                    f"row {index} has {len(item)} value{'s' * (len(item) != 1)}, and the model "
                    f"takes {n} features: {feature_summary(model.feature_names)}",
                )
            rows.append(item)
        elif isinstance(item, dict):
            rows.append(_record_to_row(model, index, item))
        else:
            raise ClientError(
                422,
                f"row {index} is {type(item).__name__} {_describe(item)}; "
                f"a row is a list of {n} values or an object of feature: value",
            )
    return _parsed(model, rows, kind)


def _parsed(model: ServedModel, rows: Sequence[Sequence[Any]], kind: str) -> Parsed:
    if model.input_format == "dataframe":
        array, unknown = _to_objects(model, rows)
        return Parsed(array, kind, unknown=unknown)
    return Parsed(_to_array(model, rows), kind)


def _to_array(model: ServedModel, rows: Sequence[Sequence[Any]]) -> NDArray[Any]:
    """The float64 rows of an array-format model (every feature a number)."""
    null_ok = model.null_ok
    if model.plain_numbers:
        for index, row in enumerate(rows):
            _check_numeric_row(null_ok, model, index, row)
    else:
        for index, row in enumerate(rows):
            _check_typed_row(model, index, row)
    try:
        array = np.asarray(rows, dtype=np.float64)
    except (OverflowError, ValueError, TypeError) as exc:
        for index, row in enumerate(rows):
            for col, value in enumerate(row):
                if type(value) is int and not -1e308 < value < 1e308:
                    raise ClientError(
                        422,
                        f"row {index}, feature `{model.features[col].name}` (column {col}): "
                        "the number is too large",
                    ) from exc
        raise ClientError(422, "the rows cannot be read as numbers") from exc
    array = array.reshape(len(rows), model.n_features)
    if not np.isfinite(array).all():
        bad = ~np.isfinite(array)
        if model.allow_nan:
            bad &= ~np.isnan(array)
        elif any(null_ok):
            bad &= ~(np.isnan(array) & np.asarray(null_ok))
        if bad.any():
            row_i, col_i = (int(v) for v in np.argwhere(bad)[0])
            raise _non_finite(model, row_i, col_i, float(array[row_i, col_i]))
    return array


def parse_predict(model: ServedModel, body: bytes) -> Parsed:
    """`{"instances": [[…], …]}` or `{"records": [{name: value}, …]}`."""
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise ClientError(
            422,
            'the body must be a JSON object with "instances" or "records", got '
            + type(doc).__name__,
        )
    has_instances, has_records = "instances" in doc, "records" in doc
    if has_instances == has_records:
        raise ClientError(
            422,
            'send exactly one of "instances" (a list of rows, each a list of '
            f'{model.n_features} values) or "records" (a list of objects feature: value)',
        )
    kind = "instances" if has_instances else "records"
    items = doc[kind]
    if not isinstance(items, list):
        raise ClientError(422, f"`{kind}` must be a list of rows, got {type(items).__name__}")
    if kind == "records" and not all(isinstance(i, dict) for i in items):
        bad = next(i for i, item in enumerate(items) if not isinstance(item, dict))
        raise ClientError(422, f"records[{bad}] must be an object of feature: value")
    return _rows_from_list(model, items, kind)


def _flatten(data: Any, depth: int = 0) -> list[Any]:
    if depth > 8:
        raise ClientError(422, "`data` is nested too deeply")
    if not isinstance(data, list):
        return [data]
    if data and all(not isinstance(d, list) for d in data):
        return data
    out: list[Any] = []
    for item in data:
        out.extend(_flatten(item, depth + 1))
    return out


def _shape(value: Any, where: str) -> list[int]:
    if (
        not isinstance(value, list)
        or not value
        or len(value) > 2
        or not all(type(v) is int and v >= 0 for v in value)
    ):
        raise ClientError(422, f"{where}.shape must be a list of 1 or 2 non-negative integers")
    return list(value)


_BINARY_DTYPES = {
    "BOOL": "<u1",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}


def _binary_values(raw: bytes, datatype: str, where: str) -> list[Any]:
    """The elements of one tensor in the binary data extension (little-endian, row-major;
    BYTES: a 4-byte length before each element)."""
    if datatype != "BYTES":
        dtype = np.dtype(_BINARY_DTYPES[datatype])
        if len(raw) % dtype.itemsize:
            raise ClientError(
                422, f"{where}: {len(raw)} bytes of {datatype} is not a whole number of values"
            )
        values: list[Any] = np.frombuffer(raw, dtype=dtype).tolist()
        return [bool(v) for v in values] if datatype == "BOOL" else values
    out: list[Any] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise ClientError(422, f"{where}: a BYTES element is cut short")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise ClientError(422, f"{where}: a BYTES element is cut short")
        try:
            out.append(raw[offset : offset + length].decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ClientError(422, f"{where}: a BYTES element is not UTF-8 text") from exc
        offset += length
    return out


def _binary_size(tensor: dict[str, Any], where: str) -> int | None:
    params = tensor.get("parameters")
    if not isinstance(params, dict) or "binary_data_size" not in params:
        return None
    size = params["binary_data_size"]
    if type(size) is not int or size < 0:
        raise ClientError(422, f"{where}.parameters.binary_data_size must be a byte count")
    return size


def _binary_outputs(doc: dict[str, Any], outputs: Any) -> set[str]:
    """The outputs to send as binary data (`binary_data_output`, per output `binary_data`)."""
    params = doc.get("parameters")
    every = isinstance(params, dict) and params.get("binary_data_output") is True
    chosen = {"predict", "predict_proba"} if every else set()
    for output in outputs or []:
        flag = (output.get("parameters") or {}).get("binary_data")
        if flag is True:
            chosen.add(output["name"])
        elif flag is False:
            chosen.discard(output["name"])
    return chosen


_Tensor = tuple[str, list[int], list[Any]]


def _v2_parameters(holder: dict[str, Any], label: str) -> None:
    """`parameters`, where given, is an object (the OIP's `$parameters`); null is none."""
    params = holder.get("parameters")
    if params is not None and not isinstance(params, dict):
        raise ClientError(
            400,
            f"{label} must be an object of name: value, got "
            f"{type(params).__name__} {_describe(params)}",
        )


def _v2_got(value: Any) -> str:
    return f"text {_describe(value)}" if isinstance(value, str) else _describe(value)


def _v2_check_data(data: list[Any], datatype: str, where: str) -> None:
    """The JSON `data` of a tensor fits its declared datatype: strings for BYTES, booleans
    for BOOL, numbers for FP*, integers in the type's range for INT* and UINT*."""
    allowed, what = _V2_JSON_TYPES[datatype]
    if not allowed.issuperset(map(type, data)):
        i, value = next((i, v) for i, v in enumerate(data) if type(v) not in allowed)
        hint = ""
        if datatype == "BYTES" and type(value) in _NUMBER_TYPES:
            hint = " (send numbers as FP64, FP32 or INT64)"
        raise ClientError(
            400,
            f"{where}: datatype {datatype} takes {what}, and data[{i}] is {_v2_got(value)}{hint}",
        )
    limits = _V2_INT_RANGE.get(datatype)
    if limits is not None:
        low, high = limits
        numbers = [v for v in data if v is not None]
        if numbers and (min(numbers) < low or max(numbers) > high):
            i = next(i for i, v in enumerate(data) if v is not None and not low <= v <= high)
            raise ClientError(
                400, f"{where}: data[{i}] = {data[i]} does not fit {datatype} ({low} to {high})"
            )
    top = _V2_FLOAT_MAX.get(datatype)
    if top is not None:
        for i, v in enumerate(data):
            if v is not None and top < abs(v) < math.inf:  # NaN and ±Infinity: later
                raise ClientError(
                    400, f"{where}: data[{i}] = {_describe(v)} does not fit {datatype}"
                )


def _unknown_input(model: ServedModel, name: str) -> ClientError:
    """An input name that is neither the [N, F] tensor's nor a feature's: 400, with both."""
    close = difflib.get_close_matches(name, model.feature_names, n=1, cutoff=0.6)
    hint = f" (did you mean `{close[0]}`?)" if close else ""
    return ClientError(
        400,
        f"input `{name[:100]}` is not an input of this model{hint}: send `{V2_TENSOR}` of "
        f"shape [N, {model.n_features}] or one input per feature, named "
        f"{feature_summary(model.feature_names)}",
    )


def _v2_body(body: bytes, header_length: int | None) -> tuple[bytes, bytes]:
    """The JSON header and the binary data after it (none without `header_length`)."""
    if header_length is None:
        return body, b""
    if not 0 < header_length <= len(body):
        raise ClientError(
            400,
            f"Inference-Header-Content-Length {header_length} does not fit the body of "
            f"{len(body)} bytes",
        )
    return body[:header_length], body[header_length:]


def _v2_wanted(outputs: Any) -> list[str] | None:
    """The names of the requested outputs (None: every output)."""
    if outputs is None:
        return None
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise ClientError(422, "`outputs` must be a list of objects with a `name`")
    for i, output in enumerate(outputs):
        _v2_parameters(output, f"outputs[{i}].parameters")
    wanted = [o["name"] for o in outputs]
    unknown = [w for w in wanted if w not in ("predict", "predict_proba")]
    if unknown:
        raise ClientError(
            422, f"unknown output(s) {unknown}; this model has predict and predict_proba"
        )
    return wanted


def _v2_tensor(tensor: Any, where: str, binary: bytes, offset: int) -> tuple[_Tensor, int]:
    """One input tensor (name, shape, values) and the offset after its binary data."""
    if not isinstance(tensor, dict):
        raise ClientError(422, f"{where} must be an object with name, shape, datatype, data")
    _v2_parameters(tensor, f"{where}.parameters")
    size = _binary_size(tensor, where)
    for key in ("name", "shape", "datatype", "data"):
        if key not in tensor and not (key == "data" and size is not None):
            raise ClientError(422, f"{where} has no `{key}`")
    if not isinstance(tensor["name"], str):
        raise ClientError(422, f"{where}.name must be a string")
    shape = _shape(tensor["shape"], where)
    datatype = tensor["datatype"]
    if not isinstance(datatype, str) or datatype not in (*V2_NUMERIC, "BYTES"):
        raise ClientError(422, f"{where}.datatype {_describe(datatype)} is not a v2 datatype")
    if size is not None:
        if offset + size > len(binary):
            raise ClientError(
                422,
                f"{where}: binary_data_size {size} goes past the {len(binary)} bytes of "
                "binary data after the JSON header (send Inference-Header-Content-Length)",
            )
        data = _binary_values(binary[offset : offset + size], datatype, where)
        offset += size
    else:
        data = _flatten(tensor["data"])
        _v2_check_data(data, datatype, where)
    expected = shape[0] * (shape[1] if len(shape) == 2 else 1)
    if len(data) != expected:
        raise ClientError(
            422, f"{where}: shape {shape} needs {expected} values, `data` has {len(data)}"
        )
    return (tensor["name"], shape, data), offset


def _row_count(count: int, none: str) -> None:
    if count == 0:
        raise ClientError(422, none)
    if count > MAX_ROWS:
        raise ClientError(413, f"{count} rows in one request; at most {MAX_ROWS}")


def _v2_matrix(model: ServedModel, tensor: _Tensor) -> list[list[Any]]:
    """The rows of one [N, F] input (or [F]: one row)."""
    n = model.n_features
    _, shape, data = tensor
    width = shape[1] if len(shape) == 2 else shape[0]
    count = shape[0] if len(shape) == 2 else 1
    if width != n:
        raise ClientError(
            422,
            f"inputs[0] has {width} columns (shape {shape}); the model takes {n} "
            f"features: {feature_summary(model.feature_names)}",
        )
    _row_count(count, "inputs[0] has no rows")
    return [data[r * n : (r + 1) * n] for r in range(count)]


def _v2_columns(model: ServedModel, tensors: list[_Tensor]) -> list[list[Any]]:
    """The rows of one input per feature, each of shape [N] or [N, 1]."""
    by_name = {}
    for name, shape, data in tensors:
        if name not in model.feature_index:
            raise _unknown_input(model, name)
        if len(shape) == 2 and shape[1] != 1:
            raise ClientError(422, f"input `{name}`: a feature column has shape [N] or [N, 1]")
        by_name[name] = data
    missing = [f for f in model.feature_names if f not in by_name]
    if missing:
        raise ClientError(422, f"missing input(s): {feature_summary(missing)}")
    lengths = {len(d) for d in by_name.values()}
    if len(lengths) != 1:
        raise ClientError(422, "the feature inputs have different numbers of rows")
    _row_count(lengths.pop(), "the inputs have no rows")
    columns = [by_name[f] for f in model.feature_names]
    return [list(r) for r in zip(*columns, strict=True)]


def parse_v2(model: ServedModel, body: bytes, header_length: int | None = None) -> Parsed:
    """An Open Inference Protocol (v2) infer request.

    Either one input of shape [N, F] (row-major `data`, flat or nested), or one input per
    feature named after it, each of shape [N] or [N, 1]. With `header_length` (the
    `Inference-Header-Content-Length` header of the binary data extension) the body is that
    many bytes of JSON, then the binary data of the inputs that give `binary_data_size`.
    """
    body, binary = _v2_body(body, header_length)
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise ClientError(422, "the body must be a JSON object with `inputs`")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ClientError(422, "`inputs` must be a non-empty list of tensors")
    req_id = doc.get("id")
    if req_id is not None and not isinstance(req_id, str):
        raise ClientError(
            400, f"`id` must be a string, got {type(req_id).__name__} {_describe(req_id)}"
        )
    _v2_parameters(doc, "`parameters`")
    outputs = doc.get("outputs")
    wanted = _v2_wanted(outputs)
    tensors: list[_Tensor] = []
    offset = 0
    for i, item in enumerate(inputs):
        tensor, offset = _v2_tensor(item, f"inputs[{i}]", binary, offset)
        tensors.append(tensor)
    if len(tensors) == 1 and tensors[0][0] not in model.feature_index:
        if tensors[0][0] != V2_TENSOR:
            raise _unknown_input(model, tensors[0][0])
        rows = _v2_matrix(model, tensors[0])
    else:
        rows = _v2_columns(model, tensors)
    if offset != len(binary):
        raise ClientError(
            422, f"{len(binary) - offset} bytes of binary data after the inputs belong to none"
        )
    parsed = _parsed(model, rows, "v2")
    parsed.v2_outputs = wanted
    parsed.v2_binary = _binary_outputs(doc, outputs)
    if isinstance(req_id, str):
        parsed.v2_id = req_id
    return parsed


# ----------------------------------------------------------- MLflow's scoring protocol

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_MLFLOW_REQUIRED = (
    "the input must be a JSON object with exactly one of the input fields "
    "dataframe_split, dataframe_records, instances, inputs"
)


@dataclass(frozen=True)
class MediaType:
    """A Content-Type as MLflow's scoring server reads it: the type and a UTF-8 check."""

    mime: str
    csv: bool


def mlflow_media_type(content_type: str) -> MediaType:
    """The request's Content-Type, or a 415 worded as MLflow's server words it: only
    `application/json` and `text/csv`, only `charset` as a parameter, only UTF-8."""
    parts = [p.strip() for p in content_type.split(";")]
    mime = parts[0].lower() or "application/json"  # no Content-Type: JSON, as curl -d sends
    pairs = (p.partition("=") for p in parts[1:] if p)
    params = {k.strip().lower(): v.strip().strip('"') for k, _, v in pairs}
    if params.get("charset", "utf-8").lower() not in ("utf-8", "utf8"):
        raise ClientError(415, "The scoring server only supports UTF-8")
    unexpected = sorted(set(params) - {"charset"})
    if unexpected:
        raise ClientError(415, f"Unrecognized content type parameters: {', '.join(unexpected)}")
    if mime not in ("application/json", "text/csv"):
        raise ClientError(
            415,
            "This predictor only supports the following content types: "
            f"['text/csv', 'application/json']. Got {content_type[:80]!r}.",
        )
    return MediaType(mime, mime == "text/csv")


def _columns_to_records(columns: dict[Any, Any], where: str) -> list[Any]:
    """`{"feature": [v, …], …}` (the columnar form of `instances`/`inputs`) as records."""
    lists = list(columns.values())
    if not all(isinstance(v, list) for v in lists):
        raise ClientError(400, f"`{where}` as an object maps each feature to a list of values")
    lengths = {len(v) for v in lists}
    if len(lengths) > 1:
        raise ClientError(400, f"the columns of `{where}` have different numbers of values")
    count = lengths.pop() if lengths else 0
    names = list(columns)
    return [{name: columns[name][i] for name in names} for i in range(count)]


def _dataframe_split(model: ServedModel, split: Any) -> list[Any]:
    """pandas' `split` orient: `{"columns": [...], "data": [[...], ...], "index": [...]}`;
    without `columns` the values are in the model's column order."""
    if not isinstance(split, dict):
        raise ClientError(400, "`dataframe_split` must be an object with `columns` and `data`")
    data = split.get("data")
    if not isinstance(data, list) or not all(isinstance(r, list) for r in data):
        raise ClientError(400, "`dataframe_split.data` must be a list of rows, each a list")
    columns = split.get("columns")
    if columns is None:
        return data
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise ClientError(400, "`dataframe_split.columns` must be a list of column names")
    if len(set(columns)) != len(columns):
        raise ClientError(400, "`dataframe_split.columns` names a column twice")
    for index, row in enumerate(data):
        if len(row) != len(columns):
            raise ClientError(
                400,
                f"dataframe_split row {index} has {len(row)} values for {len(columns)} columns",
            )
    if columns == model.feature_names:  # the usual case: rows already in model order
        return data
    return [dict(zip(columns, row, strict=True)) for row in data]


def parse_mlflow_json(model: ServedModel, body: bytes) -> Parsed:
    """A JSON body of MLflow's scoring protocol. `params` is accepted and ignored, as MLflow
    does for a model without a params schema (mlcd's models take none)."""
    doc = parse_json(body)
    if isinstance(doc, list):
        raise ClientError(400, f"{_MLFLOW_REQUIRED}. Received a list.")
    if not isinstance(doc, dict):
        raise ClientError(400, f"{_MLFLOW_REQUIRED}. Received {type(doc).__name__}.")
    keys = [k for k in MLFLOW_FORMATS if k in doc]
    if len(keys) != 1:
        raise ClientError(
            400, f"{_MLFLOW_REQUIRED}. Received an object with fields: {list(doc)[:10]}"
        )
    params = doc.get("params")
    if params is not None and not isinstance(params, dict):
        raise ClientError(400, f"`params` must be an object, got {type(params).__name__}")
    key = keys[0]
    value = doc[key]
    if key == "dataframe_split":
        items = _dataframe_split(model, value)
    elif key == "dataframe_records":
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            raise ClientError(400, "`dataframe_records` must be a list of objects feature: value")
        items = value
    elif isinstance(value, dict):
        items = _columns_to_records(value, key)
    elif isinstance(value, list):
        items = value
    else:
        raise ClientError(400, f"`{key}` must be a list of rows or an object of columns")
    return _as_mlflow(_rows_from_list(model, items, key))


def _as_mlflow(parsed: Parsed) -> Parsed:
    parsed.kind = "mlflow"
    return parsed


_TRUE = frozenset({"true", "1", "t", "yes"})
_FALSE = frozenset({"false", "0", "f", "no"})


def _csv_value(kind: str, text: str) -> Any:
    """A CSV cell as pandas' read_csv would type it for the column's kind (empty: a gap);
    a cell that does not fit stays text, and the row check names it."""
    if text == "":
        return None
    if kind in ("number", "integer"):
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            return text
    if kind == "boolean":
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    return text


def parse_mlflow_csv(model: ServedModel, body: bytes) -> Parsed:
    """A `text/csv` body: a header row of feature names (pandas' `to_csv`, what MLflow reads)
    or, as SageMaker's algorithms send, rows of values in the model's column order."""
    import csv
    import io

    if not body.strip():
        raise ClientError(400, "empty body: send CSV rows, with a header row of feature names")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ClientError(400, f"the body is not UTF-8 text (byte {exc.start})") from exc
    try:
        table = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    except csv.Error as exc:
        raise ClientError(400, f"the body is not valid CSV ({exc})") from exc
    names = model.feature_names
    header = table[0]
    if set(header) & set(names) or (header and header[0] == ""):
        columns = header[1:] if header and header[0] == "" and "" not in names else header
        skip = len(header) - len(columns)  # pandas' unnamed index column
        known = set(names)
        if set(columns) != known or len(columns) != len(known):
            unknown = [c for c in columns if c not in known]
            missing = [n for n in names if n not in columns]
            parts = []
            if unknown:
                parts.append(f"unknown column(s): {feature_summary(unknown)}")
            if missing:
                parts.append(f"missing column(s): {feature_summary(missing)}")
            raise ClientError(400, "CSV header: " + ("; ".join(parts) or "a column twice"))
        order = [columns.index(n) + skip for n in names]
        body_rows, width = table[1:], len(header)
    else:
        order = list(range(len(names)))
        body_rows, width = table, len(names)
    rows: list[list[Any]] = []
    kinds = [f.kind for f in model.features]
    for index, raw in enumerate(body_rows):
        if len(raw) != width:
            raise ClientError(
                400,
                f"CSV row {index} has {len(raw)} values; the model takes {len(names)} "
                f"features: {feature_summary(names)}",
            )
        rows.append([_csv_value(kinds[i], raw[j]) for i, j in enumerate(order)])
    return _as_mlflow(_rows_from_list(model, rows, "CSV rows"))


def parse_mlflow(model: ServedModel, body: bytes, content_type: str) -> Parsed:
    """`POST /invocations`: JSON or CSV, chosen by Content-Type as MLflow's server does."""
    media = mlflow_media_type(content_type)
    return parse_mlflow_csv(model, body) if media.csv else parse_mlflow_json(model, body)
