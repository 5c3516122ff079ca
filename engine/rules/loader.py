"""Load segment rules from YAML into a :class:`~engine.rules.model.RuleSet`.

File format::

    version: "segments-2026.12.3"       # required string: the rules_version stamped on change events
    params:                              # optional named constants, usable in expressions by name
      churn_risk_threshold: 0.70
    labels:                              # optional: the models' label horizons, in days
      churn_days: 60                     # score_churn = P(no login or purchase in the next 60 days)
      # clv_days: 90, propensity_days: 30 (defaults: SEGFLOW_CHURN_DAYS etc.)
    families:                            # required, non-empty list
      - name: churn_risk                 # unique, [a-z][a-z0-9_]*
        description: "..."               # optional
        key_features: [recency_days]     # optional: features copied into change events (known names)
        segments:                        # required, non-empty, in priority order (first match wins)
          - name: "Likely to Churn"      # unique in the family
            when: "score_churn >= churn_risk_threshold"   # condition to enter and to stay, or:
            # enter: "score_churn >= churn_risk_threshold"
            # exit: "score_churn < churn_risk_threshold - 0.05"   # default: not enter
            min_dwell_days: 2            # optional, default 0 (event time)
            label: "..."                 # optional, default: the segment name
            labels:                      # optional: the first matching `when` wins, else `label`
              - when: "key_feature_adoption < 0.5"
                text: "High-Value but Feature Underutilizer"
            on_enter: [churn_winback_email]   # optional: actions of the activation section
    activation: ...                      # optional: actions, experiments, caps, quiet hours
                                         # (format: engine.rules.activation_section)

Expressions use the language of ``engine.rules.expressions``; they may read the known variables
(features, model scores, RFM quintiles; see ``engine.rules.variables``) and the params. Every
problem (YAML syntax, a duplicate or unknown key, a wrong type, a missing key, a duplicate
name, a bad expression, an unknown variable, a bad dwell, a bad param) raises
:class:`RulesError` with the one-line message ``FILE:LINE: problem``.

Limits, so that loading is bounded in time and stack whatever the file: at most
``MAX_RULES_FILE_BYTES`` (256 KiB), YAML nested at most ``MAX_YAML_DEPTH`` (32) levels, every
string Unicode text (no lone surrogate escapes), at most ``MAX_RULES_EXPRESSIONS`` (1,000)
expressions of ``MAX_RULES_EXPRESSION_CHARS`` (50,000) characters in all, an alias counting
each time it is used, and each expression at most 10,000 characters and 100 levels deep
(``engine.rules.expressions``).
"""

from __future__ import annotations

import difflib
import hashlib
import keyword
import math
import re
import sys
from collections.abc import Collection, Mapping
from pathlib import Path

import yaml
from yaml.composer import ComposerError
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import ReaderError

from engine.activation.program import NO_ACTIVATION, ActionSpec
from engine.rules.activation_section import parse_activation
from engine.rules.expressions import FUNCTIONS, Expression, RuleSyntaxError, compile_expression
from engine.rules.model import SECONDS_PER_DAY, Family, ParamValue, RuleSet, Segment

DEFAULT_RULES_PATH = Path(__file__).resolve().with_name("default_rules.yaml")
_FAMILY_NAME = re.compile(r"[a-z][a-z0-9_]*")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
LABEL_HORIZONS = ("churn_days", "clv_days", "propensity_days")
_STR, _INT, _FLOAT, _BOOL = (f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool"))
# Bounds on the work of loading a file (the shipped rules: 5 KB, depth 7, 24 expressions), so a
# broken or hostile file fails fast with a message instead of running for minutes or overflowing
# the stack. Expressions are counted each time an alias uses them.
MAX_RULES_FILE_BYTES = 256 * 1024
MAX_YAML_DEPTH = 32
MAX_RULES_EXPRESSIONS = 1_000
MAX_RULES_EXPRESSION_CHARS = 50_000


class RulesError(ValueError):
    """A rules file is invalid; ``str()`` is one line, ``FILE:LINE: problem``."""

    def __init__(self, source: str, line: int | None, problem: str) -> None:
        self.source, self.line, self.problem = source, line, " ".join(problem.split())
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {self.problem}")


def load_rules(path: str | Path, known_names: Collection[str]) -> RuleSet:
    """Read and validate the rules file at ``path``; raises :class:`RulesError`."""
    text, data = _read(path)
    return _Parser(str(path), known_names).parse(text, data)


def _read(path: str | Path) -> tuple[str, bytes]:
    try:
        with Path(path).open("rb") as file:
            data = file.read(MAX_RULES_FILE_BYTES + 1)
    except OSError as exc:
        raise RulesError(str(path), None, f"cannot read: {exc.strerror or exc}") from None
    _check_size(str(path), data)
    try:
        return data.decode("utf-8"), data
    except UnicodeDecodeError:
        raise RulesError(str(path), 1, "not UTF-8 text") from None


def _check_size(source: str, data: bytes) -> None:
    if len(data) > MAX_RULES_FILE_BYTES:
        raise RulesError(source, 1, f"rules file larger than {MAX_RULES_FILE_BYTES} bytes")


def load_label_horizons(path: str | Path) -> dict[str, float]:
    """Only the ``labels`` section of the rules file at ``path`` (empty when it has none).

    The label horizons define the models (what ``score_churn`` predicts), so they are read at
    start-up by every process, before the rest of the file can be validated against the models'
    variables. Raises :class:`RulesError` like ``load_rules``.
    """
    return _Parser(str(path), ()).horizons(_read(path)[0])


def parse_rules(text: str, source: str = "<string>", known_names: Collection[str] = ()) -> RuleSet:
    """Validate rules given as YAML text; ``source`` names it in error messages."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate
        raise RulesError(source, text.count("\n", 0, exc.start) + 1, "not UTF-8 text") from None
    _check_size(source, data)
    return _Parser(source, known_names).parse(text, data)


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe composer, with nesting bounded and every scalar checked to be Unicode text.

    The composer recurses per level (RecursionError at a few hundred, after scanning time that
    grows with the square of the depth); a double-quoted ``"\\ud800"`` escape composes to a lone
    surrogate, which a change event carrying it as a segment name or label could not encode.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: object) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark
                raise ComposerError(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", mark)
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, ScalarNode) and not node.value.isascii():
            try:
                node.value.encode("utf-8")
            except UnicodeEncodeError:
                problem = "a lone surrogate escape in a string (not Unicode text)"
                raise ComposerError(None, None, problem, node.start_mark) from None
        return node


class _Parser:
    def __init__(self, source: str, known: Collection[str]) -> None:
        self.source, self.known = source, known
        self.params: dict[str, ParamValue] = {}
        self.actions: Mapping[str, ActionSpec] = {}
        self._constructor = SafeConstructor()
        self._expressions = 0
        self._expression_chars = 0

    def fail(self, node: Node, problem: str) -> RulesError:
        return RulesError(self.source, node.start_mark.line + 1, problem)

    def parse(self, text: str, data: bytes) -> RuleSet:
        top = self.top(text)
        version = self.string(top["version"], "version")
        labels = self.labels(top)
        activation = parse_activation(self, top["activation"]) if "activation" in top else NO_ACTIVATION
        self.actions = activation.actions
        if "params" in top and not _is_null(top["params"]):
            self.parse_params(top["params"])
        families_node = top["families"]
        families: list[Family] = []
        for node in self.sequence(families_node, "families"):
            family = self.family(node)
            if any(f.name == family.name for f in families):
                raise self.fail(self.mapping_value(node, "name"), f"duplicate family name {family.name!r}")
            families.append(family)
        fingerprint = hashlib.sha256(data).hexdigest()[:16]
        return RuleSet(
            version, self.source, dict(self.params), tuple(families), fingerprint, labels, activation
        )

    def horizons(self, text: str) -> dict[str, float]:
        return self.labels(self.top(text))

    def labels(self, top: dict[str, Node]) -> dict[str, float]:
        node = top.get("labels")
        if node is None or _is_null(node):
            return {}
        fields = self.mapping(node, "labels", set(LABEL_HORIZONS), set())
        horizons = {}
        for key, value_node in fields.items():
            days = self.number(value_node, f"labels.{key}")
            if not days > 0:
                raise self.fail(value_node, f"labels.{key} must be a positive number of days")
            horizons[key] = days
        return horizons

    def top(self, text: str) -> dict[str, Node]:
        try:
            root = yaml.compose(text, Loader=_BoundedLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else 1
            raise RulesError(self.source, line, f"invalid YAML: {exc.problem or exc.context}") from None
        except ReaderError as exc:  # a control character: not a marked error, but it has a position
            line = text.count("\n", 0, exc.position) + 1
            problem = f"unacceptable character #x{exc.character:04x} ({exc.reason})"
            raise RulesError(self.source, line, f"invalid YAML: {problem}") from None
        except yaml.YAMLError as exc:
            raise RulesError(self.source, 1, f"invalid YAML: {exc}") from None
        if root is None:
            raise RulesError(self.source, 1, "empty rules file")
        allowed = {"version", "params", "labels", "activation", "families"}
        return self.mapping(root, "the rules file", allowed, {"version", "families"})

    # -- structure --------------------------------------------------------------------------------

    def mapping(self, node: Node, what: str, allowed: set[str], required: set[str]) -> dict[str, Node]:
        if not isinstance(node, MappingNode):
            raise self.fail(node, f"{what} must be a mapping")
        values: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag != _STR:
                raise self.fail(key_node, f"keys of {what} must be strings")
            key = key_node.value
            if key in values:
                raise self.fail(key_node, f"duplicate key {key!r} in {what}")
            if allowed and key not in allowed:
                raise self.fail(
                    key_node, f"unknown key {key!r} in {what} (allowed: {', '.join(sorted(allowed))})"
                )
            values[key] = value_node
        missing = sorted(required - values.keys())
        if missing:
            raise self.fail(node, f"missing key {missing[0]!r} in {what}")
        return values

    def mapping_value(self, node: Node, key: str) -> Node:
        return next(v for k, v in node.value if k.value == key)

    def sequence(self, node: Node, what: str) -> list[Node]:
        if not isinstance(node, SequenceNode):
            raise self.fail(node, f"{what} must be a list")
        if not node.value:
            raise self.fail(node, f"{what} must not be empty")
        return list(node.value)

    def string(self, node: Node, what: str) -> str:
        if not isinstance(node, ScalarNode) or node.tag != _STR:
            raise self.fail(node, f"{what} must be a string (quote it)")
        if not node.value.strip():
            raise self.fail(node, f"{what} must not be empty")
        return node.value

    def number(self, node: Node, what: str) -> float:
        if not isinstance(node, ScalarNode) or node.tag not in (_INT, _FLOAT):
            raise self.fail(node, f"{what} must be a number")
        value = self.scalar(node)
        if not _finite(value):
            raise self.fail(node, f"{what} must be a finite number")
        return float(value)

    def scalar(self, node: ScalarNode) -> ParamValue:
        """The value of a scalar node tagged str, int, float or bool (the only ones passed here);
        an integer of more digits than Python converts is an error."""
        try:
            return self._constructor.construct_object(node)
        except ValueError:  # int() refuses more than sys.get_int_max_str_digits() digits
            raise self.fail(node, f"number of {len(node.value)} characters is out of range") from None

    def expression(self, node: Node, what: str) -> Expression:
        text = self.string(node, what)
        self._expressions += 1
        self._expression_chars += len(text)
        most, chars = MAX_RULES_EXPRESSIONS, MAX_RULES_EXPRESSION_CHARS  # read late: tests lower them
        if self._expressions > most:
            raise self.fail(node, f"more than {most} expressions (an alias counts each use)")
        if self._expression_chars > chars:
            raise self.fail(
                node, f"expressions longer than {chars} characters in all (an alias counts each use)"
            )
        try:
            return compile_expression(text, self.known, self.params)
        except RuleSyntaxError as exc:
            raise self.fail(node, f"{what}: {exc}") from None

    # -- sections ---------------------------------------------------------------------------------

    def parse_params(self, node: Node) -> None:
        self.mapping(node, "params", set(), set())  # a mapping with unique string keys
        for key_node, value_node in node.value:
            key = key_node.value
            if not _PARAM_NAME.fullmatch(key) or keyword.iskeyword(key) or key in ("True", "False", "None"):
                raise self.fail(key_node, f"param name {key!r} is not an identifier")
            if key in self.known:
                raise self.fail(key_node, f"param {key!r} shadows a variable of the same name")
            if key in FUNCTIONS:
                raise self.fail(key_node, f"param {key!r} shadows the function {key}()")
            if not isinstance(value_node, ScalarNode) or value_node.tag not in (_STR, _INT, _FLOAT, _BOOL):
                raise self.fail(value_node, f"param {key!r} must be a number, a string or a bool")
            value = self.scalar(value_node)
            if isinstance(value, int | float) and not isinstance(value, bool) and not _finite(value):
                raise self.fail(value_node, f"param {key!r} must be a finite number")
            self.params[key] = value

    def family(self, node: Node) -> Family:
        allowed = {"name", "description", "key_features", "segments"}
        fields = self.mapping(node, "a family", allowed, {"name", "segments"})
        name = self.string(fields["name"], "family name")
        if not _FAMILY_NAME.fullmatch(name):
            raise self.fail(fields["name"], f"family name {name!r} must match [a-z][a-z0-9_]*")
        description = ""
        if "description" in fields and not _is_null(fields["description"]):
            description = self.string(fields["description"], "description")
        key_features: list[str] = []
        if "key_features" in fields and not _is_null(fields["key_features"]):
            for item in self.sequence(fields["key_features"], "key_features"):
                feature = self.string(item, "a key feature")
                if feature not in self.known:
                    raise self.fail(item, f"unknown key feature {feature!r}{_suggest(feature, self.known)}")
                if feature in key_features:
                    raise self.fail(item, f"key feature {feature!r} is listed twice")
                key_features.append(feature)
        segments: list[Segment] = []
        for item in self.sequence(fields["segments"], f"segments of family {name!r}"):
            segment = self.segment(item, len(segments))
            if any(s.name == segment.name for s in segments):
                raise self.fail(self.mapping_value(item, "name"), f"duplicate segment name {segment.name!r}")
            segments.append(segment)
        return Family(name, description, tuple(key_features), tuple(segments))

    def segment(self, node: Node, priority: int) -> Segment:
        allowed = {"name", "when", "enter", "exit", "min_dwell_days", "label", "labels", "on_enter"}
        fields = self.mapping(node, "a segment", allowed, {"name"})
        name = self.string(fields["name"], "segment name")
        if "when" in fields and "enter" in fields:
            raise self.fail(fields["enter"], f"segment {name!r}: give either when or enter, not both")
        if "when" not in fields and "enter" not in fields:
            raise self.fail(node, f"segment {name!r} needs when (or enter and exit)")
        if "exit" in fields and "when" in fields:
            raise self.fail(fields["exit"], f"segment {name!r}: exit goes with enter, not with when")
        key = "when" if "when" in fields else "enter"
        enter = self.expression(fields[key], key)
        exit_ = self.expression(fields["exit"], "exit") if "exit" in fields else None
        dwell = 0.0
        if "min_dwell_days" in fields:
            dwell = self.number(fields["min_dwell_days"], "min_dwell_days")
            if dwell < 0:
                raise self.fail(fields["min_dwell_days"], "min_dwell_days must not be negative")
        label = self.string(fields["label"], "label") if "label" in fields else name
        labels: list[tuple[Expression, str]] = []
        if "labels" in fields:
            for item in self.sequence(fields["labels"], "labels"):
                entry = self.mapping(item, "a label", {"when", "text"}, {"when", "text"})
                labels.append((self.expression(entry["when"], "when"), self.string(entry["text"], "text")))
        on_enter = self.on_enter(fields["on_enter"], name) if "on_enter" in fields else ()
        return Segment(name, enter, exit_, dwell * SECONDS_PER_DAY, label, tuple(labels), priority, on_enter)

    def on_enter(self, node: Node, segment: str) -> tuple[str, ...]:
        names: list[str] = []
        for item in self.sequence(node, f"on_enter of segment {segment!r}"):
            action = self.string(item, "an action name")
            if action not in self.actions:
                known = self.actions.keys()
                raise self.fail(
                    item,
                    f"unknown action {action!r} (declare it under activation.actions)"
                    + _suggest(action, known),
                )
            if action in names:
                raise self.fail(item, f"action {action!r} is listed twice")
            names.append(action)
        return tuple(names)


def _finite(value: object) -> bool:
    """A finite number within the float range (float() of a larger int raises OverflowError)."""
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int) and abs(value) <= sys.float_info.max


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _suggest(name: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
