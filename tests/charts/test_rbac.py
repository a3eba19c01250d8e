"""The chart's RBAC grants exactly what the operator's code uses, derived from the code.

Nothing here lists the operator's permissions by hand. They are derived from:

* kopf's registry, as ``build_registry()`` builds it (plus kopf's default registry,
  for module-level decorators): a change handler, timer or daemon on a resource
  makes kopf list, watch and patch it (finalizers, its annotations) and patch its
  status subresource; an event or index handler makes it list and watch it;
* every call of a ``kubernetes.client`` API method in ``operator/autovision_operator``
  (found in the source, so every code path counts): its HTTP method and URL path,
  read from the client's own source, give the verb and the resource, the way the
  API server authorizes the request (GET on an object is ``get``, on a collection
  ``list``, plus ``watch`` with ``watch=True`` or ``Watch().stream``; POST
  ``create``, PUT ``update``, PATCH ``patch``, DELETE ``delete`` or
  ``deletecollection``). ``CustomObjectsApi`` calls name their group and plural in
  arguments: those are evaluated from constants, module names and attribute chains
  (``Dataset.info.plural``), following parameters back to every call site;
* kopf's event posting (``kopf.info/warn/event/exception`` calls) and its peering
  settings (``kopf_settings()``): ClusterKopfPeering when it serves all namespaces,
  KopfPeering in each served namespace otherwise;
* owner references with ``blockOwnerDeletion: true`` in the code: the
  OwnerReferencesPermissionEnforcement admission plugin then needs ``update`` on the
  owner's ``finalizers``; the owners are taken to be the resources with change
  handlers (a handler's children are owned by its resource).

The derived rules are compared with the rendered chart's ClusterRole (all
namespaces) and with each Role (``watchNamespaces``), both ways.

Limits, on purpose: each argument is resolved on its own, so a loop over
(group, plural) pairs yields every combination (more rules, never fewer); an
argument the scan cannot evaluate (computed strings, values from the API) fails
test_every_api_call_of_the_operator_is_understood rather than being guessed. A
client method reached through ``getattr`` with a computed name is invisible to
the scan: name client methods in the code (bound methods in a table are fine).
"""

from __future__ import annotations

import ast
import bisect
import functools
import importlib
import inspect
import itertools
import operator
import pkgutil
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import helm_python
import kopf
import kubernetes.client
import pytest
import yaml

import autovision_operator
from autovision.crds import custom_resource_definition
from autovision.resources import GROUP, RESOURCE_TYPES
from autovision.serving.access import predict_permission
from autovision_operator.config import OperatorConfig, kopf_settings
from autovision_operator.handlers import build_registry

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "autovision"
PACKAGE = Path(autovision_operator.__file__).parent
PACKAGE_NAME = autovision_operator.__name__
RULES_TEMPLATE = "charts/autovision/templates/_helpers.tpl (autovision.rbacRules)"
NAMESPACE = "autovision-system"
WATCHED = ("team-a", "team-b")
SERVICE_ACCOUNT = "av-autovision"
KOPF_EVENT_FUNCTIONS = {"info", "warn", "event", "exception"}
WATCH_STREAM_FUNCTIONS = {"stream"}
CLIENT_CALL_SUFFIXES = ("_with_http_info", "_without_preload_content")
MAX_DEPTH = 8


# --- rules --------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Rule:
    """One verb on one resource; ``namespaced`` rules can be granted by a Role."""

    group: str
    resource: str
    verb: str
    namespaced: bool = True

    def __str__(self) -> str:
        scope = "" if self.namespaced else " (cluster-scoped)"
        return f"{self.group or 'core'}: {self.resource} {self.verb}{scope}"


@dataclass
class Derivation:
    """The rules the code needs, each with where it comes from; and what could not be resolved."""

    needs: dict[Rule, list[str]] = field(default_factory=lambda: defaultdict(list))
    unresolved: list[str] = field(default_factory=list)

    def add(self, rules: Iterable[Rule], why: str) -> None:
        for rule in rules:
            self.needs[rule].append(why)

    def flattened(self) -> Derivation:
        """The same rules without their scope: a ClusterRole bound cluster-wide grants them all."""
        flat = Derivation(unresolved=list(self.unresolved))
        for rule, why in self.needs.items():
            flat.add([replace(rule, namespaced=True)], ", ".join(why))
        return flat


# --- the kubernetes client: method name -> HTTP method and URL path -----------------


@dataclass(frozen=True)
class Endpoint:
    api: str
    method: str
    http: str
    path: str


@functools.cache
def client_endpoints() -> dict[str, tuple[Endpoint, ...]]:
    """Every API method of kubernetes.client, read from the generated ``_<method>_serialize`` functions.

    The sources are read, not imported: importing every API module (and the
    models they pull in) would take seconds.
    """
    api_class = re.compile(r"^class (\w+Api)\b", re.MULTILINE)
    definition = re.compile(r"def _(\w+)_serialize\(")
    request = re.compile(r"method='(\w+)',\s*resource_path='([^']+)'")
    found: dict[str, list[Endpoint]] = defaultdict(list)
    for path in sorted((Path(str(kubernetes.client.__file__)).parent / "api").glob("*_api.py")):
        source = path.read_text()
        (api,) = api_class.findall(source)
        requests = [(match.start(), match.group(1), match.group(2)) for match in request.finditer(source)]
        starts = [start for start, _, _ in requests]
        for match in definition.finditer(source):
            _, http, resource_path = requests[bisect.bisect(starts, match.start())]
            found[match.group(1)].append(Endpoint(api, match.group(1), http, resource_path))
    return {method: tuple(endpoints) for method, endpoints in found.items()}


def client_method(name: str) -> str | None:
    """The client API method an attribute name calls, if it is one."""
    for suffix in CLIENT_CALL_SUFFIXES:
        name = name.removesuffix(suffix)
    return name if name in client_endpoints() else None


def parse_path(path: str) -> tuple[str, str, bool, bool, str | None] | None:
    """(group, resource, namespaced, named, subresource) of an API path; None for discovery paths."""
    parts = path.strip("/").split("/")
    if parts[0] == "api":
        group, rest = "", parts[2:]
    elif parts[0] == "apis" and len(parts) > 2:
        group, rest = parts[1], parts[3:]
    else:
        return None
    rest = rest[1:] if rest[:1] == ["watch"] else rest
    namespaced = len(rest) > 2 and rest[0] == "namespaces" and rest[1] == "{namespace}"
    rest = rest[2:] if namespaced else rest
    if not rest:
        return None
    return group, rest[0], namespaced, len(rest) > 1, rest[2] if len(rest) > 2 else None


def endpoint_verbs(endpoint: Endpoint, named: bool, watch: bool) -> set[str]:
    if endpoint.http == "GET":
        return {"get"} if named else {"list", "watch"} if watch else {"list"}
    if endpoint.http == "DELETE":
        return {"delete"} if named else {"deletecollection"}
    return {{"POST": "create", "PUT": "update", "PATCH": "patch"}[endpoint.http]}


def endpoint_rules(endpoint: Endpoint, placeholders: dict[str, list[str]], watch: bool) -> set[Rule]:
    """The rules one request needs; ``placeholders`` are the candidate values of ``{group}``, ``{plural}``."""
    parsed = parse_path(endpoint.path)
    if parsed is None:
        return set()
    group, resource, namespaced, named, subresource = parsed
    rules = set()
    for group_value, resource_value in itertools.product(
        placeholders.get(group.strip("{}"), [group]), placeholders.get(resource.strip("{}"), [resource])
    ):
        full = f"{resource_value}/{subresource}" if subresource else resource_value
        rules |= {Rule(group_value, full, verb, namespaced) for verb in endpoint_verbs(endpoint, named, watch)}
    return rules


def path_placeholders(endpoint: Endpoint) -> list[str]:
    """The path parameters that name the resource itself (the custom objects API's)."""
    parsed = parse_path(endpoint.path)
    if parsed is None:
        return []
    return [part.strip("{}") for part in parsed[:2] if part.startswith("{")]


# --- the operator's source ----------------------------------------------------------


@dataclass
class SourceModule:
    """A module of the scanned package: its syntax tree and its runtime namespace."""

    name: str
    tree: ast.Module
    namespace: dict[str, Any]
    parents: dict[ast.AST, ast.AST] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node

    def where(self, node: ast.AST) -> str:
        return f"{self.name}:{getattr(node, 'lineno', '?')}"

    def scopes(self, node: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda]:
        """The functions enclosing ``node``, innermost first."""
        while node in self.parents:
            node = self.parents[node]
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield node


def package_modules(directory: Path, package: str) -> list[SourceModule]:
    """Every module of a package, imported (for its names) and parsed (for its calls)."""
    modules = []
    for info in pkgutil.iter_modules([str(directory)]):
        module: ModuleType = importlib.import_module(f"{package}.{info.name}")
        path = directory / f"{info.name}.py"
        modules.append(SourceModule(f"{package}.{info.name}", ast.parse(path.read_text()), vars(module)))
    return modules


def source_module(name: str, source: str) -> SourceModule:
    """A module made from source text (for testing the derivation itself)."""
    source = inspect.cleandoc(source)
    namespace: dict[str, Any] = {"__name__": name}
    exec(compile(source, name, "exec"), namespace)
    return SourceModule(name, ast.parse(source), namespace)


class UnresolvedError(Exception):
    """An argument whose value the scan cannot tell."""


class Resolver:
    """Evaluates argument expressions statically, following parameters back to their call sites."""

    def __init__(self, modules: list[SourceModule]) -> None:
        self.modules = modules

    def values(self, node: ast.expr, module: SourceModule, depth: int = 0) -> list[Any]:
        """Every value ``node`` may have; UnresolvedError when one cannot be told."""
        if depth > MAX_DEPTH:
            raise UnresolvedError(f"{ast.unparse(node)} (too many indirections)")
        result: list[Any]
        match node:
            case ast.Constant(value=value):
                result = [value]
            case ast.Tuple(elts=elements) | ast.List(elts=elements):
                parts = [self.values(element, module, depth) for element in elements]
                result = [
                    tuple(itertools.chain.from_iterable(map(_spread, combo))) for combo in itertools.product(*parts)
                ]
            case ast.Starred(value=value):
                result = [_Spread(item) for item in self.values(value, module, depth)]
            case ast.Name(id=name):
                result = self._name(name, node, module, depth)
            case ast.Attribute(value=value, attr=attr):
                try:
                    result = [getattr(item, attr) for item in self.values(value, module, depth)]
                except AttributeError as error:
                    raise UnresolvedError(f"{ast.unparse(node)}: {error}") from None
            case ast.Subscript(value=value, slice=index):
                keys = self.values(index, module, depth)
                result = [item[key] for item in self.values(value, module, depth) for key in keys]
            case ast.Slice(lower=lower, upper=upper, step=step):
                bounds = [
                    [None] if bound is None else self.values(bound, module, depth) for bound in (lower, upper, step)
                ]
                result = [slice(*combo) for combo in itertools.product(*bounds)]
            case _:
                raise UnresolvedError(ast.unparse(node))
        return result

    def positional(self, arguments: list[ast.expr], index: int, module: SourceModule, depth: int = 0) -> list[Any]:
        """The values of the ``index``-th positional argument, resolving only what it takes to find it."""
        for position, argument in enumerate(arguments):
            if isinstance(argument, ast.Starred):
                found = []
                for spread in self.values(argument.value, module, depth):
                    items = tuple(spread)
                    if index < len(items):
                        found.append(items[index])
                    else:
                        found += self.positional(arguments[position + 1 :], index - len(items), module, depth)
                return found
            if index == 0:
                return self.values(argument, module, depth)
            index -= 1
        return []

    def _name(self, name: str, node: ast.AST, module: SourceModule, depth: int) -> list[Any]:
        for scope in module.scopes(node):
            arguments = scope.args
            parameters = [arg.arg for arg in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]]
            if name in parameters:
                if isinstance(scope, ast.Lambda):
                    raise UnresolvedError(f"{name} (a lambda parameter)")
                return self._parameter(scope, name, module, depth)
            assigned = list(self._assignments(scope, name, module, depth))
            if assigned:
                return assigned
        if name in module.namespace:
            return [module.namespace[name]]
        raise UnresolvedError(name)

    def _assignments(
        self, scope: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda, name: str, module: SourceModule, depth: int
    ) -> Iterator[Any]:
        """Values bound to ``name`` in ``scope`` by assignment or for loop (tuple unpacking included)."""
        for node in ast.walk(scope):
            if isinstance(node, ast.Assign):
                pairs = [(target, node.value) for target in node.targets]
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                pairs = [(node.target, node.value)]
            elif isinstance(node, ast.For):
                pairs = [(node.target, ast.Starred(node.iter))]
            else:
                continue
            for target, value in pairs:
                path = _target_path(target, name)
                if path is None:
                    continue
                for item in self.values(value.value if isinstance(value, ast.Starred) else value, module, depth + 1):
                    for element in item if isinstance(value, ast.Starred) else [item]:
                        yield functools.reduce(operator.getitem, path, element)

    def _parameter(
        self, function: ast.FunctionDef | ast.AsyncFunctionDef, name: str, module: SourceModule, depth: int
    ) -> list[Any]:
        """Every value the call sites of ``function`` pass as its parameter ``name``."""
        positional = [arg.arg for arg in [*function.args.posonlyargs, *function.args.args]]
        if positional[:1] in (["self"], ["cls"]) and isinstance(module.parents.get(function), ast.ClassDef):
            positional = positional[1:]
        values: list[Any] = []
        sites = 0
        for caller in self.modules:
            for call in ast.walk(caller.tree):
                if not isinstance(call, ast.Call) or _called_name(call) != function.name:
                    continue
                sites += 1
                keyword = next((kw.value for kw in call.keywords if kw.arg == name), None)
                if keyword is not None:
                    values += self.values(keyword, caller, depth + 1)
                    continue
                given = (
                    self.positional(call.args, positional.index(name), caller, depth + 1) if name in positional else []
                )
                values += given or self._default(function, name, module, depth)
        if not sites:
            raise UnresolvedError(f"{name}: no call of {function.name}() found")
        return values

    def _default(
        self, function: ast.FunctionDef | ast.AsyncFunctionDef, name: str, module: SourceModule, depth: int
    ) -> list[Any]:
        arguments = function.args
        positional = [*arguments.posonlyargs, *arguments.args]
        defaults = dict(
            zip(
                [arg.arg for arg in positional[len(positional) - len(arguments.defaults) :]],
                arguments.defaults,
                strict=True,
            )
        )
        defaults |= {
            arg.arg: default
            for arg, default in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True)
            if default
        }
        if name not in defaults:
            raise UnresolvedError(f"{name}: not passed to {function.name}() and no default")
        return self.values(defaults[name], module, depth + 1)


@dataclass(frozen=True)
class _Spread:
    """A starred argument's value, spread into the surrounding tuple."""

    value: Any


def _spread(item: Any) -> tuple[Any, ...]:
    return tuple(item.value) if isinstance(item, _Spread) else (item,)


def _target_path(target: ast.expr, name: str) -> list[int] | None:
    """Indexes leading from an assigned value to ``name`` within an (unpacking) target."""
    if isinstance(target, ast.Name):
        return [] if target.id == name else None
    if isinstance(target, ast.Tuple | ast.List):
        for index, element in enumerate(target.elts):
            path = _target_path(element, name)
            if path is not None:
                return [index, *path]
    return None


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def api_classes_by_attribute(modules: list[SourceModule]) -> dict[str, set[str]]:
    """Which client API classes a name holds: ``self.batch = BatchV1Api(...)`` -> {"batch": {"BatchV1Api"}}."""
    apis = {endpoint.api for endpoints in client_endpoints().values() for endpoint in endpoints}
    found: dict[str, set[str]] = defaultdict(set)
    for module in modules:
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.Assign):
                continue
            for target in node.targets:
                pairs = (
                    zip(target.elts, node.value.elts, strict=False)
                    if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple)
                    else [(target, node.value)]
                )
                for holder, value in pairs:
                    name = holder.attr if isinstance(holder, ast.Attribute) else getattr(holder, "id", None)
                    if isinstance(value, ast.Call) and _called_name(value) in apis and name:
                        found[name].add(str(_called_name(value)))
    return found


def client_call_rules(modules: list[SourceModule], derivation: Derivation) -> None:
    """Rules for every kubernetes client API method the modules call or pass on (e.g. to Watch().stream)."""
    resolver = Resolver(modules)
    holders = api_classes_by_attribute(modules)
    apis = {endpoint.api for endpoints in client_endpoints().values() for endpoint in endpoints}
    referenced = {
        name
        for module in modules
        for node in ast.walk(module.tree)
        if (name := getattr(node, "id", None) or getattr(node, "attr", None)) in apis
    }
    for module in modules:
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.Attribute) or (method := client_method(node.attr)) is None:
                continue
            where = f"{module.where(node)} {node.attr}"
            parent = module.parents.get(node)
            call = parent if isinstance(parent, ast.Call) and parent.func is node else None
            receiver = node.value.attr if isinstance(node.value, ast.Attribute) else getattr(node.value, "id", "")
            candidates = [
                endpoint
                for endpoint in client_endpoints()[method]
                if endpoint.api in (holders.get(receiver) or referenced or {endpoint.api})
            ]
            if not candidates:
                continue
            streamed = isinstance(parent, ast.Call) and _called_name(parent) in WATCH_STREAM_FUNCTIONS
            watch = streamed or (
                call is not None
                and any(
                    kw.arg == "watch" and isinstance(kw.value, ast.Constant) and kw.value.value for kw in call.keywords
                )
            )
            options = []
            for endpoint in candidates:
                try:
                    placeholders = call_placeholders(resolver, module, endpoint, call)
                except UnresolvedError as error:
                    derivation.unresolved.append(f"{where}: cannot tell which resource it acts on ({error})")
                    break
                options.append(endpoint_rules(endpoint, placeholders, watch))
            else:
                if len({frozenset(rules) for rules in options}) > 1:
                    derivation.unresolved.append(f"{where}: ambiguous between {[e.api for e in candidates]}")
                    continue
                derivation.add(options[0], where)


def call_placeholders(
    resolver: Resolver, module: SourceModule, endpoint: Endpoint, call: ast.Call | None
) -> dict[str, list[str]]:
    """The values of the path parameters naming the resource (``group``, ``plural``) in one call."""
    needed = path_placeholders(endpoint)
    if not needed:
        return {}
    if call is None:
        raise UnresolvedError("passed on, not called: its arguments are elsewhere")
    parameters = list(inspect.signature(getattr(getattr(kubernetes.client, endpoint.api), endpoint.method)).parameters)
    parameters = parameters[1:] if parameters[:1] == ["self"] else parameters
    keywords = {kw.arg: kw.value for kw in call.keywords if kw.arg}
    placeholders: dict[str, list[str]] = {}
    for name in needed:
        if name in keywords:
            placeholders[name] = [str(value) for value in resolver.values(keywords[name], module)]
            continue
        placeholders[name] = sorted(
            {str(value) for value in resolver.positional(call.args, parameters.index(name), module)}
        )
        if not placeholders[name]:
            raise UnresolvedError(f"{name} not given")
    return placeholders


def kopf_event_calls(modules: list[SourceModule]) -> list[str]:
    """Where the code posts Kubernetes events through kopf."""
    return [
        f"{module.where(node)} kopf.{node.func.attr}"
        for module in modules
        for node in ast.walk(module.tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in KOPF_EVENT_FUNCTIONS
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "kopf"
    ]


def block_owner_deletion(modules: list[SourceModule]) -> list[str]:
    """Where the code writes owner references with ``blockOwnerDeletion: True``."""
    return [
        module.where(node)
        for module in modules
        for node in ast.walk(module.tree)
        if isinstance(node, ast.Dict)
        and any(
            isinstance(key, ast.Constant)
            and key.value == "blockOwnerDeletion"
            and isinstance(value, ast.Constant)
            and value.value
            for key, value in zip(node.keys, node.values, strict=True)
        )
    ]


# --- kopf ---------------------------------------------------------------------------


@functools.cache
def known_resources() -> frozenset[kopf.Resource]:
    """What a kopf selector may name: AutoVision's CRDs and the client's built-in resources."""
    resources = set()
    for resource in RESOURCE_TYPES:
        crd = custom_resource_definition(resource)
        names, (version,) = crd["spec"]["names"], crd["spec"]["versions"]
        resources.add(
            kopf.Resource(
                group=crd["spec"]["group"],
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                singular=names["singular"],
                shortcuts=frozenset(names.get("shortNames", [])),
                categories=frozenset(names.get("categories", [])),
                subresources=frozenset(version.get("subresources", {})),
                namespaced=crd["spec"]["scope"] == "Namespaced",
            )
        )
    builtin: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(lambda: {"subresources": set()})
    for method, endpoints in client_endpoints().items():
        for endpoint in endpoints:
            parsed = parse_path(endpoint.path)
            if parsed is None or "{group}" in endpoint.path:
                continue
            group, plural, namespaced, named, subresource = parsed
            version = endpoint.path.strip("/").split("/")[2 if group else 1]
            info = builtin[group, version, plural]
            info["namespaced"] = info.get("namespaced", False) or namespaced
            if subresource:
                info["subresources"].add(subresource)
            kind = re.fullmatch(r"read_(?:namespaced_)?(\w+)", method)
            if kind and named and not subresource:
                info["kind"] = "".join(word.capitalize() for word in kind.group(1).split("_"))
    for (group, version, plural), info in builtin.items():
        kind = info.get("kind")
        resources.add(
            kopf.Resource(
                group=group,
                version=version,
                plural=plural,
                kind=kind,
                singular=kind.lower() if kind else None,
                subresources=frozenset(info["subresources"]),
                namespaced=info["namespaced"],
            )
        )
    return frozenset(resources)


def kopf_handler_rules(
    registry: kopf.OperatorRegistry, derivation: Derivation, package: str | None = None
) -> set[tuple[str, str, bool]]:
    """Rules for kopf's watching and patching of the resources handled; returns those it patches.

    With ``package``, only handlers defined in that package count (kopf's default
    registry is shared with whatever else the process imported).
    """
    changed = set()
    categories: dict[str, tuple[Any, set[str]]] = {
        "changing": (registry._changing, {"list", "watch", "patch"}),
        "spawning": (registry._spawning, {"list", "watch", "patch"}),
        "watching": (registry._watching, {"list", "watch"}),
        "indexing": (registry._indexing, {"list", "watch"}),
    }
    for webhook in registry._webhooks.get_all_handlers():
        derivation.unresolved.append(f"admission webhook {webhook.id}: not covered by this derivation")
    for category, (handlers, verbs) in categories.items():
        for handler in handlers.get_all_handlers():
            if package and not getattr(handler.fn, "__module__", "").startswith(package):
                continue
            where = f"kopf {category} handler {handler.id}"
            selected = handler.selector.select(known_resources()) if handler.selector else set()
            if not selected:
                derivation.unresolved.append(f"{where}: names no known resource ({handler.selector})")
            for resource in selected:
                namespaced = bool(resource.namespaced)
                derivation.add({Rule(resource.group, resource.plural, verb, namespaced) for verb in verbs}, where)
                if "patch" in verbs:
                    changed.add((resource.group, resource.plural, namespaced))
                    if "status" in resource.subresources:
                        derivation.add({Rule(resource.group, f"{resource.plural}/status", "patch", namespaced)}, where)
    return changed


def derive(watch_namespaces: tuple[str, ...] = (), modules: list[SourceModule] | None = None) -> Derivation:
    """Everything the operator needs to be allowed, configured to watch these namespaces (none: all)."""
    modules = package_modules(PACKAGE, PACKAGE_NAME) if modules is None else modules
    config = OperatorConfig(storage_root="s3://autovision", trainer_image="trainer", watch_namespaces=watch_namespaces)
    settings = kopf_settings(config)
    derivation = Derivation()
    client_call_rules(modules, derivation)
    changed: set[tuple[str, str, bool]] = set()
    changed |= kopf_handler_rules(build_registry(config), derivation)
    changed |= kopf_handler_rules(kopf.get_default_registry(), derivation, package=PACKAGE_NAME)
    if settings.posting.enabled:
        for where in kopf_event_calls(modules):
            derivation.add({Rule("", "events", "create")}, where)
    if not settings.peering.standalone:
        plural = "clusterkopfpeerings" if settings.peering.clusterwide else "kopfpeerings"
        rules = {Rule("kopf.dev", plural, verb, plural == "kopfpeerings") for verb in ("list", "watch", "patch")}
        derivation.add(rules, f"kopf peering {settings.peering.name!r}")
    for where in block_owner_deletion(modules):
        owners = {(group, plural, namespaced) for group, plural, namespaced in changed if group == "autovision.dev"}
        for group, plural, namespaced in owners:
            derivation.add({Rule(group, f"{plural}/finalizers", "update", namespaced)}, f"{where} blockOwnerDeletion")
    return derivation


# --- the chart ------------------------------------------------------------------------


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm_python.Chart.load(CHART) as chart:
        rendered = chart.render(values, name="av", namespace=NAMESPACE, is_install=True)
    return [doc for path, text in rendered.items() if path.endswith(".yaml") for doc in yaml.safe_load_all(text) if doc]


def granted(role: dict[str, Any], namespaced: bool) -> set[Rule]:
    rules = set()
    for rule in role["rules"]:
        assert not rule.get("resourceNames"), f"{role['metadata']['name']}: resourceNames are not derived: {rule}"
        assert not rule.get("nonResourceURLs"), f"{role['metadata']['name']}: nonResourceURLs: {rule}"
        for group, resource, verb in itertools.product(rule["apiGroups"], rule["resources"], rule["verbs"]):
            assert "*" not in group + resource + verb, f"{role['metadata']['name']}: wildcard in {rule}"
            rules.add(Rule(group, resource, verb, namespaced))
    return rules


def bound_roles(objects: list[dict[str, Any]], kind: str, namespace: str | None) -> list[dict[str, Any]]:
    """The roles of ``kind`` bound to the operator's ServiceAccount (in ``namespace``, for Roles)."""
    binding_kind = {"ClusterRole": "ClusterRoleBinding", "Role": "RoleBinding"}[kind]
    names = {
        obj["roleRef"]["name"]
        for obj in objects
        if obj["kind"] == binding_kind
        and obj["metadata"].get("namespace") == namespace
        and obj["roleRef"]["kind"] == kind
        and {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE} in obj["subjects"]
    }
    return [
        obj
        for obj in objects
        if obj["kind"] == kind and obj["metadata"]["name"] in names and obj["metadata"].get("namespace") == namespace
    ]


def difference_report(needed: Derivation, has: set[Rule], what: str, fix: str = RULES_TEMPLATE) -> str:
    """Empty when ``has`` is exactly what is needed; else the missing and unused rules."""
    missing = sorted(set(needed.needs) - has)
    unused = sorted(has - set(needed.needs))
    if not missing and not unused:
        return ""
    lines = [f"{what} does not match the code that uses it; edit {fix}."]
    if missing:
        lines.append("Missing (the code needs them):")
        lines += [f"  - {rule}   <- {', '.join(needed.needs[rule][:3])}" for rule in missing]
    if unused:
        lines.append("Unused (no code needs them; remove them):")
        lines += [f"  - {rule}" for rule in unused]
    return "\n".join(lines)


# --- the tests ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clusterwide() -> Derivation:
    return derive()


@pytest.fixture(scope="module")
def namespaced() -> Derivation:
    return derive(WATCHED)


def test_every_api_call_of_the_operator_is_understood(clusterwide: Derivation, namespaced: Derivation) -> None:
    unresolved = sorted(set(clusterwide.unresolved + namespaced.unresolved))
    assert not unresolved, (
        "The RBAC derivation cannot tell what these calls need; pass the group and plural as constants or "
        "module-level names (or attributes such as ModelDeployment.info.plural), or extend tests/test_rbac.py:\n  "
        + "\n  ".join(unresolved)
    )


def test_cluster_role_matches_the_code(clusterwide: Derivation) -> None:
    objects = render({})
    roles = bound_roles(objects, "ClusterRole", None)
    assert roles, "no ClusterRole is bound to the operator's ServiceAccount"
    has = set().union(*(granted(role, namespaced=True) for role in roles))
    report = difference_report(clusterwide.flattened(), has, "The ClusterRole")
    assert not report, report


@pytest.mark.parametrize("namespace", WATCHED)
def test_roles_of_watched_namespaces_match_the_code(namespaced: Derivation, namespace: str) -> None:
    objects = render({"watchNamespaces": list(WATCHED)})
    roles = bound_roles(objects, "Role", namespace)
    assert roles, f"no Role is bound to the operator's ServiceAccount in {namespace}"
    has = set().union(*(granted(role, namespaced=True) for role in roles))
    cluster = set().union(*(granted(role, namespaced=False) for role in bound_roles(objects, "ClusterRole", None)))
    report = difference_report(namespaced, has | cluster, f"The Role in {namespace}")
    assert not report, report


def test_namespaced_mode_grants_nothing_cluster_wide() -> None:
    kinds = {obj["kind"] for obj in render({"watchNamespaces": list(WATCHED)})}
    assert not {"ClusterRole", "ClusterRoleBinding"} & kinds


def test_the_operator_is_known_to_use_its_main_calls(clusterwide: Derivation) -> None:
    """A guard against a derivation that silently finds nothing."""
    needs = set(clusterwide.needs)
    assert Rule("batch", "jobs", "create") in needs
    assert Rule("autovision.dev", "datasets", "watch") in needs
    assert Rule("autovision.dev", "modeldeployments", "create") in needs


# --- the console's service account ----------------------------------------------------

CONSOLE_MODULES = ("autovision.console.cluster_source", "autovision.auth.kubernetes")
CONSOLE_ACCOUNT = "av-autovision-console"
CONSOLE_NAMESPACE = "team-a"
CONSOLE_TEMPLATE = "charts/autovision/templates/console.yaml"
# autovision.auth.kubernetes.KubeClient's requests: method -> HTTP method.
KUBE_CLIENT_METHODS = {"get": "GET", "post": "POST"}


def imported_modules(names: Iterable[str]) -> list[SourceModule]:
    """Modules by name, imported (for their names) and parsed (for their calls)."""
    modules = []
    for name in names:
        module = importlib.import_module(name)
        source = Path(str(module.__file__)).read_text()
        modules.append(SourceModule(name, ast.parse(source), vars(module)))
    return modules


def console_rules(modules: list[SourceModule]) -> Derivation:
    """What the console's service account needs, from its KubeClient calls (``self._client.<method>``).

    A path built by ``resource_path(namespace, plural[, name])`` is an AutoVision
    resource (a name makes a GET a ``get``, else a ``list``); any other path is a
    constant parsed like the client's own; the pod's own token sent to a gateway
    (``own_authorization``) must pass that gateway's own check, ``predict_permission``.
    """
    resolver = Resolver(modules)
    derivation = Derivation()
    for module in modules:
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            receiver = node.func.value
            if not isinstance(receiver, ast.Attribute) or receiver.attr != "_client":
                continue
            where = f"{module.where(node)} {node.func.attr}"
            if node.func.attr == "own_authorization":
                gateway = predict_permission("any", "any")
                rule = Rule(gateway.group, f"{gateway.resource}/{gateway.subresource}", gateway.verb)
                derivation.add({rule}, f"{where} (a gateway's token check)")
                continue
            http = KUBE_CLIENT_METHODS.get(node.func.attr)
            if http is None:
                continue
            path = node.args[0]
            try:
                if isinstance(path, ast.Call) and _called_name(path) == "resource_path":
                    named = len(path.args) > 2
                    verbs = endpoint_verbs(Endpoint("", "", http, ""), named, watch=False)
                    plurals = resolver.positional(path.args, 1, module)
                    derivation.add({Rule(GROUP, plural, verb) for plural in plurals for verb in verbs}, where)
                    continue
                for value in resolver.values(path, module):
                    parsed = parse_path(str(value))
                    if parsed is None:
                        raise UnresolvedError(f"{value!r} is not a resource path")
                    group, resource, namespaced, named, _ = parsed
                    verbs = endpoint_verbs(Endpoint("", "", http, str(value)), named, watch=False)
                    derivation.add({Rule(group, resource, verb, namespaced) for verb in verbs}, where)
            except UnresolvedError as error:
                derivation.unresolved.append(f"{where}: cannot tell which resource it acts on ({error})")
    return derivation


def console_grants(objects: list[dict[str, Any]]) -> set[Rule]:
    """What the chart grants the console's ServiceAccount: Roles (namespaced) and ClusterRoles."""
    subject = {"kind": "ServiceAccount", "name": CONSOLE_ACCOUNT, "namespace": NAMESPACE}
    has: set[Rule] = set()
    for binding_kind, role_kind in (("RoleBinding", "Role"), ("ClusterRoleBinding", "ClusterRole")):
        for binding in (obj for obj in objects if obj["kind"] == binding_kind and subject in obj["subjects"]):
            namespace = binding["metadata"].get("namespace")
            (role,) = [
                obj
                for obj in objects
                if obj["kind"] == role_kind
                and obj["metadata"]["name"] == binding["roleRef"]["name"]
                and obj["metadata"].get("namespace") == namespace
            ]
            has |= granted(role, namespaced=role_kind == "Role")
    return has


@pytest.fixture(scope="module")
def console_needs() -> Derivation:
    return console_rules(imported_modules(CONSOLE_MODULES))


def test_every_api_call_of_the_console_is_understood(console_needs: Derivation) -> None:
    assert not console_needs.unresolved, "\n".join(console_needs.unresolved)
    needs = set(console_needs.needs)
    assert Rule(GROUP, "datasets", "list") in needs, "a guard against a derivation that finds nothing"
    assert Rule("authentication.k8s.io", "tokenreviews", "create", namespaced=False) in needs


@pytest.mark.parametrize("watch", [(), tuple(WATCHED)], ids=["all-namespaces", "namespaced"])
def test_the_consoles_grants_match_its_code(console_needs: Derivation, watch: tuple[str, ...]) -> None:
    values: dict[str, Any] = {"console": {"enabled": True, "namespace": CONSOLE_NAMESPACE}}
    if watch:
        values["watchNamespaces"] = list(watch)
    objects = render(values)
    report = difference_report(
        console_needs, console_grants(objects), "The console's Role and ClusterRole", CONSOLE_TEMPLATE
    )
    assert not report, report
    roles = [obj for obj in objects if obj["kind"] == "Role" and obj["metadata"]["name"] == CONSOLE_ACCOUNT]
    assert [role["metadata"]["namespace"] for role in roles] == [CONSOLE_NAMESPACE], "granted where it shows only"


def test_the_console_can_be_installed_with_nothing_cluster_wide() -> None:
    values = {
        "watchNamespaces": list(WATCHED),
        "console": {"enabled": True, "namespace": "team-a", "reviewRole": False},
    }
    objects = render(values)
    assert not {"ClusterRole", "ClusterRoleBinding"} & {obj["kind"] for obj in objects}
    missing = {rule for rule in console_rules(imported_modules(CONSOLE_MODULES)).needs if not rule.namespaced}
    assert missing == {
        Rule("authentication.k8s.io", "tokenreviews", "create", namespaced=False),
        Rule("authorization.k8s.io", "subjectaccessreviews", "create", namespaced=False),
    }, "exactly what the built-in system:auth-delegator ClusterRole grants (README)"


# --- the derivation itself, on code written for it ----------------------------------------------


SAMPLE = """
import kopf
from kubernetes import watch
from kubernetes.client import AppsV1Api, CoreV1Api, CustomObjectsApi

GROUP = "autovision.dev"
MODELS = (GROUP, "v1alpha1", "modeldeployments")


class Client:
    def __init__(self, api):
        self.apps = AppsV1Api(api)
        self.core = CoreV1Api(api)
        self.custom = CustomObjectsApi(api)

    def scale(self, namespace, name, body):
        return self.apps.patch_namespaced_deployment_scale(name, namespace, body)

    def status(self, plural, namespace, name, body):
        return self.custom.patch_namespaced_custom_object_status(GROUP, "v1alpha1", namespace, plural, name, body)

    def read(self, namespace, name, plural="datasets"):
        return self.custom.get_namespaced_custom_object(GROUP, "v1alpha1", namespace, plural, name)

    def models(self, namespace):
        return self.custom.list_namespaced_custom_object(*MODELS[:2], namespace, MODELS[2], watch=True)

    def events(self, namespace):
        return watch.Watch().stream(self.core.list_namespaced_pod, namespace)

    def everything(self):
        for plural in ("deployments", "trainingjobs"):
            self.custom.delete_collection_cluster_custom_object(GROUP, "v1", plural)


def use(client):
    client.status("modeldeployments", "ns", "x", {})
    client.read("ns", "x")
    client.read("ns", "x", plural="trainingjobs")
"""


def sample_rules() -> Derivation:
    derivation = Derivation()
    client_call_rules([source_module("sample", SAMPLE)], derivation)
    return derivation


def test_derivation_reads_verbs_and_resources_from_the_client() -> None:
    derivation = sample_rules()
    assert derivation.unresolved == []
    assert set(derivation.needs) == {
        Rule("apps", "deployments/scale", "patch"),
        Rule("autovision.dev", "modeldeployments/status", "patch"),
        Rule("autovision.dev", "datasets", "get"),
        Rule("autovision.dev", "trainingjobs", "get"),
        Rule("autovision.dev", "modeldeployments", "list"),
        Rule("autovision.dev", "modeldeployments", "watch"),
        Rule("", "pods", "list"),
        Rule("", "pods", "watch"),
        Rule("autovision.dev", "deployments", "deletecollection", namespaced=False),
        Rule("autovision.dev", "trainingjobs", "deletecollection", namespaced=False),
    }


def test_derivation_reports_what_it_cannot_resolve() -> None:
    module = source_module(
        "opaque",
        """
        from kubernetes.client import CustomObjectsApi

        def read(api, namespace, name):
            plural = name.split("-")[0] + "s"
            return CustomObjectsApi(api).get_namespaced_custom_object("g", "v1", namespace, plural, name)
        """,
    )
    derivation = Derivation()
    client_call_rules([module], derivation)
    assert len(derivation.unresolved) == 1
    assert "opaque:5 get_namespaced_custom_object" in derivation.unresolved[0]


def test_kopf_handlers_need_list_watch_patch_and_status() -> None:
    registry = kopf.OperatorRegistry()
    kopf.on.create("autovision.dev", "v1alpha1", "modeldeployments", registry=registry)(lambda **_: None)
    kopf.on.event("apps", "v1", "deployments", registry=registry)(lambda **_: None)
    kopf.timer("Pod", interval=1, registry=registry)(lambda **_: None)
    derivation = Derivation()
    kopf_handler_rules(registry, derivation)
    assert derivation.unresolved == []
    assert set(derivation.needs) == {
        Rule("autovision.dev", "modeldeployments", "list"),
        Rule("autovision.dev", "modeldeployments", "watch"),
        Rule("autovision.dev", "modeldeployments", "patch"),
        Rule("autovision.dev", "modeldeployments/status", "patch"),
        Rule("apps", "deployments", "list"),
        Rule("apps", "deployments", "watch"),
        Rule("", "pods", "list"),
        Rule("", "pods", "watch"),
        Rule("", "pods", "patch"),
        Rule("", "pods/status", "patch"),
    }


def test_missing_and_unused_rules_are_named() -> None:
    derivation = Derivation()
    derivation.add({Rule("batch", "jobs", "create")}, "kube.py:1 create_namespaced_job")
    assert difference_report(derivation, {Rule("batch", "jobs", "create")}, "The Role") == ""
    report = difference_report(derivation, {Rule("", "secrets", "list")}, "The Role")
    assert "Missing" in report
    assert "batch: jobs create   <- kube.py:1 create_namespaced_job" in report
    assert "Unused" in report
    assert "core: secrets list" in report
