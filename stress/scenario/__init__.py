"""Scenario files: the schema, YAML with line numbers, and validation against the model."""

from stress.scenario.durations import parse_duration
from stress.scenario.load import LoadedScenario, load_scenario
from stress.scenario.schema import Scenario, json_schema

__all__ = ["LoadedScenario", "Scenario", "json_schema", "load_scenario", "parse_duration"]
