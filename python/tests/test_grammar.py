"""JSON-schema constrained output through the package on both real models, greedy and sampled:
every answer parses and validates against its schema (Python's `jsonschema`). Also GBNF
grammars, and bad schemas/grammars failing before generation."""

import json

import jsonschema
import pytest

import lmrun

S = {"type": "string", "maxLength": 24}
SCHEMAS = [
    {"type": "object", "properties": {"name": S, "age": {"type": "integer"}},
     "required": ["name", "age"]},
    {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 5},
    {"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]},
                                      "ok": {"type": "boolean"}}, "required": ["color", "ok"]},
    {"type": "object", "properties": {"price": {"type": "number"}, "note": {"type": "null"}},
     "required": ["price"]},
    {"$defs": {"pt": {"type": "object", "properties": {"x": {"type": "integer"},
                                                       "y": {"type": "integer"}},
                      "required": ["x", "y"]}},
     "type": "object", "properties": {"a": {"$ref": "#/$defs/pt"}, "b": {"$ref": "#/$defs/pt"}},
     "required": ["a", "b"]},
    {"type": "object", "properties": {"id": {"anyOf": [{"type": "integer"}, S]}},
     "required": ["id"]},
    {"type": "object", "properties": {"kind": {"const": "event"}, "title": S},
     "required": ["kind", "title"]},
    {"type": "array", "items": {"type": "object", "properties": {"k": S, "v": {"type": "integer"}},
                                "required": ["k", "v"]}, "maxItems": 3},
    {"type": "object", "properties": {"tags": {"type": "array", "items": S, "maxItems": 3},
                                      "count": {"type": "integer"}},
     "required": ["tags", "count"]},
    {"type": "boolean"},
]


@pytest.mark.parametrize("which", ["gemma", "qwen"])
def test_json_schema_outputs_validate(request, which):
    runner = lmrun.TextLLMRunner(request.getfixturevalue(which))
    for i, schema in enumerate(SCHEMAS):
        for temperature, seed in [(0.0, None), (0.8, 100 + i)]:
            runner.reset()
            text, ids, _ = runner.generate_full(
                "Here is some data in JSON:\n", max_new_tokens=200, temperature=temperature,
                seed=seed, echo=False, json_schema=json.dumps(schema))
            doc = json.loads(text)
            jsonschema.validate(doc, schema)


def test_gbnf_grammar_and_errors(gemma):
    runner = lmrun.TextLLMRunner(gemma)
    text, _, _ = runner.generate_full(
        "Answer yes or no: is Paris in France?", max_new_tokens=8, temperature=0, echo=False,
        grammar='root ::= " "? ("yes" | "no")')
    assert text.strip() in ("yes", "no")
    with pytest.raises(ValueError, match="line 2"):
        runner.generate_full("x", grammar='root ::= "a"\nbad ::= (')
    with pytest.raises(ValueError, match="pattern"):
        runner.generate_full("x", json_schema='{"type": "string", "pattern": "^a+$"}')
