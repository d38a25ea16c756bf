"""Unit tests for the settings object: environment, fallbacks and the TOML file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worker import config
from worker.config import KNOWN_VARIABLES, FunctionOptions, Settings
from worker.errors import ConfigError


def settings_with_file(tmp_path: Path, text: str, **env: str) -> Settings:
    path = tmp_path / "amworker.toml"
    path.write_text(text, encoding="utf-8")
    return Settings.from_env({"AMWORKER_CONFIG_FILE": str(path), **env})


# --- defaults ---------------------------------------------------------------


def test_empty_environment_gives_documented_defaults() -> None:
    settings = Settings.from_env({})

    assert settings.gearman_servers == (config.DEFAULT_GEARMAN_SERVER,)
    assert settings.broker_url == config.DEFAULT_REDIS_URL
    assert settings.result_backend == config.DEFAULT_REDIS_URL
    assert settings.modules_file == config.BUNDLED_MODULES_FILE
    assert settings.client_scripts_package == "worker.clientScripts"
    assert settings.shared_directory == "/var/archivematica/sharedDirectory/"
    assert settings.client_assets_directory == config.DEFAULT_CLIENT_ASSETS_DIRECTORY
    assert settings.client_scripts_directory == ""
    assert settings.capture_output is True
    assert settings.shim_concurrency == config.DEFAULT_SHIM_CONCURRENCY
    assert settings.max_output_bytes == 8 * 1024 * 1024
    assert settings.max_payload_bytes == config.DEFAULT_MAX_PAYLOAD_BYTES
    assert settings.time_limit == config.DEFAULT_TIME_LIMIT_SECONDS
    assert settings.soft_time_limit is None
    assert settings.max_tasks_per_child == config.DEFAULT_MAX_TASKS_PER_CHILD == 500
    assert settings.max_memory_per_child == config.DEFAULT_MAX_MEMORY_PER_CHILD_KIB == 1024 * 1024
    assert settings.database_wait == config.DEFAULT_DATABASE_WAIT_SECONDS == 30.0
    assert settings.max_log_bytes == config.DEFAULT_MAX_LOG_BYTES == 64 * 1024
    assert settings.worker_concurrency is None
    assert settings.default_queue == "amworker"
    assert settings.metrics_port is None
    assert settings.log_level == "INFO"
    assert settings.log_format == "text"
    assert settings.config_file is None
    assert dict(settings.functions) == {}


def test_default_database_is_sqlite_under_the_data_directory(tmp_path: Path) -> None:
    settings = Settings.from_env({"AMWORKER_DATA_DIRECTORY": str(tmp_path)})

    assert settings.database_url == f"sqlite:///{tmp_path / 'amworker.sqlite3'}"


def test_default_sqlite_path_is_absolute() -> None:
    url = Settings.from_env({}).database_url

    assert url.startswith("sqlite:////")
    assert url.endswith("/var/amworker.sqlite3")


def test_from_env_reads_os_environ_when_given_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith(("AMWORKER_", "ARCHIVEMATICA_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AMWORKER_SHIM_CONCURRENCY", "3")

    assert Settings.from_env().shim_concurrency == 3


# --- every AMWORKER_ variable -------------------------------------------------

#: (variable, raw value, attribute, parsed value) for every process setting.
PARSED = [
    ("AMWORKER_GEARMAN_SERVERS", " a:1 , b.example:4730 ,", "gearman_servers", ("a:1", "b.example:4730")),
    ("AMWORKER_BROKER_URL", "redis://r:6379/2", "broker_url", "redis://r:6379/2"),
    ("AMWORKER_RESULT_BACKEND", "redis://r:6379/3", "result_backend", "redis://r:6379/3"),
    ("AMWORKER_DATABASE_URL", "postgres://u:p@h/db", "database_url", "postgres://u:p@h/db"),
    ("AMWORKER_MODULES_FILE", "/etc/modules.ini", "modules_file", "/etc/modules.ini"),
    ("AMWORKER_CLIENT_SCRIPTS_PACKAGE", "my.scripts", "client_scripts_package", "my.scripts"),
    ("AMWORKER_SHARED_DIRECTORY", "/shared/", "shared_directory", "/shared/"),
    ("AMWORKER_CLIENT_ASSETS_DIRECTORY", "/assets/", "client_assets_directory", "/assets/"),
    ("AMWORKER_CLIENT_SCRIPTS_DIRECTORY", "/scripts/", "client_scripts_directory", "/scripts/"),
    ("AMWORKER_WATCH_DIRECTORY", "/watch/", "watch_directory", "/watch/"),
    ("AMWORKER_REJECTED_DIRECTORY", "/rejected/", "rejected_directory", "/rejected/"),
    ("AMWORKER_CAPTURE_OUTPUT", "off", "capture_output", False),
    ("AMWORKER_SCRIPT_LOGS_IN_OUTPUT", "on", "script_logs_in_output", True),
    ("AMWORKER_SHIM_CONCURRENCY", "4", "shim_concurrency", 4),
    ("AMWORKER_MAX_OUTPUT_BYTES", "1024", "max_output_bytes", 1024),
    ("AMWORKER_MAX_PAYLOAD_BYTES", "2048", "max_payload_bytes", 2048),
    ("AMWORKER_MAX_BATCH_TASKS", "500", "max_batch_tasks", 500),
    ("AMWORKER_MAX_ARGUMENT_BYTES", "65536", "max_argument_bytes", 65536),
    ("AMWORKER_MAX_BATCH_ARGUMENT_BYTES", "33554432", "max_batch_argument_bytes", 33554432),
    ("AMWORKER_QUEUE_WAIT", "12.5", "queue_wait", 12.5),
    ("AMWORKER_TIME_LIMIT", "60", "time_limit", 60.0),
    ("AMWORKER_SOFT_TIME_LIMIT", "55", "soft_time_limit", 55.0),
    ("AMWORKER_LEASE_SECONDS", "2", "lease_seconds", 2.0),
    ("AMWORKER_VISIBILITY_TIMEOUT", "90", "visibility_timeout", 90.0),
    ("AMWORKER_RESULT_EXPIRES", "3600", "result_expires", 3600.0),
    ("AMWORKER_REDELIVERY_GRACE", "900", "redelivery_grace", 900.0),
    ("AMWORKER_MAX_TASKS_PER_CHILD", "100", "max_tasks_per_child", 100),
    ("AMWORKER_MAX_TASKS_PER_CHILD", "0", "max_tasks_per_child", None),
    ("AMWORKER_MAX_MEMORY_PER_CHILD", "204800", "max_memory_per_child", 204800),
    ("AMWORKER_MAX_MEMORY_PER_CHILD", "0", "max_memory_per_child", None),
    ("AMWORKER_DATABASE_WAIT", "2.5", "database_wait", 2.5),
    ("AMWORKER_MAX_LOG_BYTES", "4096", "max_log_bytes", 4096),
    ("AMWORKER_WORKER_CONCURRENCY", "8", "worker_concurrency", 8),
    ("AMWORKER_DEFAULT_QUEUE", "fast", "default_queue", "fast"),
    ("AMWORKER_METRICS_ADDRESS", "0.0.0.0", "metrics_address", "0.0.0.0"),
    ("AMWORKER_METRICS_PORT", "9100", "metrics_port", 9100),
    ("AMWORKER_WORKER_METRICS_PORT", "9101", "worker_metrics_port", 9101),
    ("AMWORKER_LOG_LEVEL", "debug", "log_level", "DEBUG"),
    ("AMWORKER_LOG_FORMAT", "json", "log_format", "json"),
    ("AMWORKER_IMPORT_PATHS", f"/a{os.pathsep}/b", "import_paths", ("/a", "/b")),
    ("AMWORKER_DJANGO_SETTINGS", "my.settings", "django_settings", "my.settings"),
]


@pytest.mark.parametrize(("variable", "raw", "attribute", "expected"), PARSED, ids=[p[0] for p in PARSED])
def test_every_variable_is_parsed(variable: str, raw: str, attribute: str, expected: object) -> None:
    settings = Settings.from_env({variable: raw})

    assert getattr(settings, attribute) == expected


def test_every_known_process_variable_has_a_parsing_test() -> None:
    # AMWORKER_ARCHIVEMATICA_HOME: tests/unit/test_archivematica_home.py
    tested = {p[0] for p in PARSED} | {"AMWORKER_CONFIG_FILE", "AMWORKER_DATA_DIRECTORY",
                                       "AMWORKER_ARCHIVEMATICA_HOME"}

    assert tested == KNOWN_VARIABLES


def test_decoded_size_caps_have_defaults_and_are_validated() -> None:
    settings = Settings.from_env({})
    assert settings.max_batch_tasks == config.DEFAULT_MAX_BATCH_TASKS == 4096
    assert settings.max_argument_bytes == config.DEFAULT_MAX_ARGUMENT_BYTES == 1024 * 1024
    assert settings.max_batch_argument_bytes == config.DEFAULT_MAX_BATCH_ARGUMENT_BYTES
    for variable in ("AMWORKER_MAX_BATCH_TASKS", "AMWORKER_MAX_ARGUMENT_BYTES",
                     "AMWORKER_MAX_BATCH_ARGUMENT_BYTES"):
        with pytest.raises(ConfigError, match=variable):
            Settings.from_env({variable: "0"})
    # One task's arguments must fit in a batch's.
    with pytest.raises(ConfigError, match="AMWORKER_MAX_ARGUMENT_BYTES=2048 is more than"):
        Settings.from_env({"AMWORKER_MAX_ARGUMENT_BYTES": "2048",
                           "AMWORKER_MAX_BATCH_ARGUMENT_BYTES": "1024"})


def test_values_are_stripped_of_surrounding_whitespace() -> None:
    assert Settings.from_env({"AMWORKER_SHIM_CONCURRENCY": "  7\n"}).shim_concurrency == 7


def test_result_backend_follows_the_broker_unless_set() -> None:
    settings = Settings.from_env({"AMWORKER_BROKER_URL": "redis://broker:6379/5"})

    assert settings.result_backend == "redis://broker:6379/5"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("TRUE", True), ("yes", True), ("On", True),
     ("0", False), ("false", False), ("No", False), ("off", False)],
)
def test_booleans_accept_the_usual_spellings(raw: str, expected: bool) -> None:
    assert Settings.from_env({"AMWORKER_CAPTURE_OUTPUT": raw}).capture_output is expected


# --- ARCHIVEMATICA_MCPCLIENT_* fallbacks ---------------------------------------

FALLBACKS = [
    ("ARCHIVEMATICA_MCPCLIENT_MCPCLIENT_MCPARCHIVEMATICASERVER", "gearman:4730", "gearman_servers",
     ("gearman:4730",)),
    ("ARCHIVEMATICA_MCPCLIENT_MCPCLIENT_ARCHIVEMATICACLIENTMODULES", "/am/modules", "modules_file",
     "/am/modules"),
    ("ARCHIVEMATICA_MCPCLIENT_MCPCLIENT_SHAREDDIRECTORYMOUNTED", "/am/shared/", "shared_directory",
     "/am/shared/"),
    ("ARCHIVEMATICA_MCPCLIENT_MCPCLIENT_CLIENTASSETSDIRECTORY", "/am/assets/", "client_assets_directory",
     "/am/assets/"),
    ("ARCHIVEMATICA_MCPCLIENT_MCPCLIENT_CLIENTSCRIPTSDIRECTORY", "/am/scripts/", "client_scripts_directory",
     "/am/scripts/"),
    ("ARCHIVEMATICA_MCPCLIENT_MCPCLIENT_CAPTURE_CLIENT_SCRIPT_OUTPUT", "false", "capture_output", False),
]


@pytest.mark.parametrize(("variable", "raw", "attribute", "expected"), FALLBACKS,
                         ids=[f[0] for f in FALLBACKS])
def test_archivematica_variable_is_a_fallback(variable: str, raw: str, attribute: str,
                                              expected: object) -> None:
    assert getattr(Settings.from_env({variable: raw}), attribute) == expected


def test_amworker_variable_wins_over_its_fallback() -> None:
    settings = Settings.from_env({
        "AMWORKER_GEARMAN_SERVERS": "ours:1",
        "ARCHIVEMATICA_MCPCLIENT_MCPCLIENT_MCPARCHIVEMATICASERVER": "theirs:2",
        "AMWORKER_CAPTURE_OUTPUT": "yes",
        "ARCHIVEMATICA_MCPCLIENT_MCPCLIENT_CAPTURE_CLIENT_SCRIPT_OUTPUT": "no",
    })

    assert settings.gearman_servers == ("ours:1",)
    assert settings.capture_output is True


def test_archivematica_database_parts_become_a_mysql_url() -> None:
    settings = Settings.from_env({
        "ARCHIVEMATICA_MCPCLIENT_CLIENT_HOST": "mysql.example",
        "ARCHIVEMATICA_MCPCLIENT_CLIENT_USER": "archivematica",
        "ARCHIVEMATICA_MCPCLIENT_CLIENT_PASSWORD": "p@ss:w/rd",
        "ARCHIVEMATICA_MCPCLIENT_CLIENT_DATABASE": "MCP",
        "ARCHIVEMATICA_MCPCLIENT_CLIENT_PORT": "3307",
    })

    # The password is URL-quoted, so a character like @ or / cannot end it early.
    assert settings.database_url == "mysql://archivematica:p%40ss%3Aw%2Frd@mysql.example:3307/MCP"


def test_database_parts_default_to_the_stock_worker_defaults() -> None:
    settings = Settings.from_env({"ARCHIVEMATICA_MCPCLIENT_CLIENT_DATABASE": "MCP"})

    assert settings.database_url == "mysql://archivematica:demo@localhost:3306/MCP"


def test_any_database_part_selects_mysql_with_stock_defaults_for_the_rest() -> None:
    settings = Settings.from_env({"ARCHIVEMATICA_MCPCLIENT_CLIENT_HOST": "db.example"})

    assert settings.database_url == "mysql://archivematica:demo@db.example:3306/MCP"


def test_database_url_wins_over_database_parts() -> None:
    settings = Settings.from_env({
        "AMWORKER_DATABASE_URL": "sqlite:////tmp/x.sqlite3",
        "ARCHIVEMATICA_MCPCLIENT_CLIENT_DATABASE": "MCP",
    })

    assert settings.database_url == "sqlite:////tmp/x.sqlite3"


def test_bad_database_port_names_its_variable() -> None:
    with pytest.raises(ConfigError, match="ARCHIVEMATICA_MCPCLIENT_CLIENT_PORT"):
        Settings.from_env({
            "ARCHIVEMATICA_MCPCLIENT_CLIENT_DATABASE": "MCP",
            "ARCHIVEMATICA_MCPCLIENT_CLIENT_PORT": "not-a-port",
        })


def test_bad_fallback_value_names_the_fallback_variable() -> None:
    with pytest.raises(ConfigError, match="ARCHIVEMATICA_MCPCLIENT_MCPCLIENT_MCPARCHIVEMATICASERVER"):
        Settings.from_env({"ARCHIVEMATICA_MCPCLIENT_MCPCLIENT_MCPARCHIVEMATICASERVER": "no-port"})


def test_other_archivematica_variables_are_ignored() -> None:
    settings = Settings.from_env({"ARCHIVEMATICA_MCPCLIENT_SOMETHING_ELSE": "x"})

    assert settings == Settings.from_env({})


# --- bad values -------------------------------------------------------------

BAD = [
    ("AMWORKER_GEARMAN_SERVERS", ""),
    ("AMWORKER_GEARMAN_SERVERS", " , "),
    ("AMWORKER_GEARMAN_SERVERS", "host-without-port"),
    ("AMWORKER_GEARMAN_SERVERS", ":4730"),
    ("AMWORKER_GEARMAN_SERVERS", "host:99999"),
    ("AMWORKER_GEARMAN_SERVERS", "host:port"),
    ("AMWORKER_BROKER_URL", "localhost:6379"),
    ("AMWORKER_RESULT_BACKEND", "nowhere"),
    ("AMWORKER_DATABASE_URL", "/var/db.sqlite3"),
    ("AMWORKER_CLIENT_SCRIPTS_PACKAGE", "not a package"),
    ("AMWORKER_CLIENT_SCRIPTS_PACKAGE", "pkg..mod"),
    ("AMWORKER_CAPTURE_OUTPUT", "maybe"),
    ("AMWORKER_SHIM_CONCURRENCY", "0"),
    ("AMWORKER_SHIM_CONCURRENCY", "-2"),
    ("AMWORKER_SHIM_CONCURRENCY", "1.5"),
    ("AMWORKER_MAX_OUTPUT_BYTES", "lots"),
    ("AMWORKER_MAX_PAYLOAD_BYTES", "0"),
    ("AMWORKER_QUEUE_WAIT", "0"),
    ("AMWORKER_TIME_LIMIT", "-1"),
    ("AMWORKER_TIME_LIMIT", "nan"),
    ("AMWORKER_SOFT_TIME_LIMIT", "soon"),
    ("AMWORKER_LEASE_SECONDS", "0"),
    ("AMWORKER_VISIBILITY_TIMEOUT", ""),
    ("AMWORKER_RESULT_EXPIRES", "a week"),
    ("AMWORKER_MAX_TASKS_PER_CHILD", "-1"),
    ("AMWORKER_MAX_MEMORY_PER_CHILD", "1GB"),
    ("AMWORKER_DATABASE_WAIT", "0"),
    ("AMWORKER_MAX_LOG_BYTES", "0"),
    ("AMWORKER_WORKER_CONCURRENCY", "many"),
    ("AMWORKER_DEFAULT_QUEUE", ""),
    ("AMWORKER_DEFAULT_QUEUE", "two words"),
    ("AMWORKER_METRICS_PORT", "0"),
    ("AMWORKER_METRICS_PORT", "65536"),
    ("AMWORKER_WORKER_METRICS_PORT", "http"),
    ("AMWORKER_LOG_LEVEL", "VERBOSE"),
    ("AMWORKER_LOG_FORMAT", "JSON"),
]


@pytest.mark.parametrize(("variable", "raw"), BAD, ids=[f"{v}={r!r}" for v, r in BAD])
def test_bad_value_raises_config_error_naming_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({variable: raw})

    assert f"{variable}=" in str(caught.value)


def test_config_error_is_not_a_bare_value_error() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"AMWORKER_SHIM_CONCURRENCY": "x"})

    assert not isinstance(caught.value, ValueError)
    assert caught.value.__cause__ is None


# --- unknown variables ----------------------------------------------------------


def test_unknown_amworker_variable_is_refused() -> None:
    with pytest.raises(ConfigError, match="AMWORKER_SHIM_CONCURENCY"):
        Settings.from_env({"AMWORKER_SHIM_CONCURENCY": "4"})


def test_every_unknown_variable_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"AMWORKER_ZZZ": "1", "AMWORKER_AAA": "2"})

    assert "AMWORKER_AAA, AMWORKER_ZZZ" in str(caught.value)


def test_data_directory_is_known_though_only_tooling_reads_it(tmp_path: Path) -> None:
    Settings.from_env({"AMWORKER_DATA_DIRECTORY": str(tmp_path)})


def test_variables_without_the_prefix_are_not_checked() -> None:
    assert Settings.from_env({"AMWORKERX": "1", "amworker_lower": "2"}) == Settings.from_env({})


# --- the TOML config file -----------------------------------------------------


def test_config_file_sets_per_function_options(tmp_path: Path) -> None:
    settings = settings_with_file(tmp_path, """
[functions."normalize_v1.0"]
slices = 4
queue = "heavy"
time_limit = 7200
soft_time_limit = 7000.5
max_output_bytes = 4096
""")

    assert settings.functions == {
        "normalize_v1.0": FunctionOptions(
            slices=4, queue="heavy", time_limit=7200.0, soft_time_limit=7000.5, max_output_bytes=4096
        )
    }
    assert settings.config_file == str(tmp_path / "amworker.toml")


def test_config_file_function_names_are_lower_cased(tmp_path: Path) -> None:
    settings = settings_with_file(tmp_path, '[functions."IdentifyFileFormat_v0.0"]\nslices = 2\n')

    assert list(settings.functions) == ["identifyfileformat_v0.0"]
    assert settings.options_for("identifyfileformat_v0.0").slices == 2


def test_function_names_differing_only_in_case_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="copy_v0.0"):
        settings_with_file(tmp_path, '[functions."Copy_v0.0"]\nslices = 2\n'
                                     '[functions."copy_v0.0"]\nslices = 3\n')


def test_config_file_defaults_override_the_environment(tmp_path: Path) -> None:
    settings = settings_with_file(
        tmp_path,
        '[defaults]\nqueue = "bulk"\ntime_limit = 30\nsoft_time_limit = 25\nmax_output_bytes = 100\n',
        AMWORKER_TIME_LIMIT="999",
    )

    assert settings.default_queue == "bulk"
    assert settings.time_limit == 30.0
    assert settings.soft_time_limit == 25.0
    assert settings.max_output_bytes == 100


def test_config_file_settings_are_read_only(tmp_path: Path) -> None:
    settings = settings_with_file(tmp_path, '[functions."a"]\nslices = 2\n')

    with pytest.raises(TypeError):
        settings.functions["b"] = FunctionOptions()  # type: ignore[index]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[defaults]\nslices = 2\n', "slices can only be set per function"),
        ('[defaults]\nretries = 2\n', "unknown option 'retries'"),
        ('[functions."a"]\nslice = 2\n', "unknown option 'slice'"),
        ('[function."a"]\nslices = 2\n', "unknown table(s) ['function']"),
        ('queue = "x"\n', "unknown table(s) ['queue']"),
        ('[functions."a"]\nslices = 0\n', "slices = 0 is not valid"),
        ('[functions."a"]\nslices = 2.5\n', "slices = 2.5 is not valid"),
        ('[functions."a"]\nslices = true\n', "slices = True is not valid"),
        ('[functions."a"]\nqueue = "two words"\n', "queue = 'two words' is not valid"),
        ('[functions."a"]\ntime_limit = -5\n', "time_limit = -5 is not valid"),
        ('[functions."a"]\nsoft_time_limit = "soon"\n', "soft_time_limit = 'soon' is not valid"),
        ('[functions."a"]\nmax_output_bytes = 0\n', "max_output_bytes = 0 is not valid"),
        ('[defaults]\ntime_limit = 0\n', "[defaults]: time_limit = 0 is not valid"),
        ('functions = 3\n', "functions"),
        ('defaults = "fast"\n', "[defaults]: expected a table"),
        ('[functions]\na = 3\n', '[functions."a"]: expected a table'),
        ('[functions."a"\n', "cannot be read"),
    ],
)
def test_bad_config_file_raises_config_error(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_with_file(tmp_path, text)

    assert needle in str(caught.value)


def test_bad_option_error_names_the_file_and_function(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_with_file(tmp_path, '[functions."Copy_v0.0"]\nslices = 0\n')

    assert str(tmp_path / "amworker.toml") in str(caught.value)
    assert '[functions."Copy_v0.0"]' in str(caught.value)


def test_missing_config_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="AMWORKER_CONFIG_FILE"):
        Settings.from_env({"AMWORKER_CONFIG_FILE": str(tmp_path / "absent.toml")})


def test_empty_config_file_variable_means_no_file() -> None:
    assert Settings.from_env({"AMWORKER_CONFIG_FILE": ""}).functions == {}


# --- options_for and queues -------------------------------------------------------


def test_options_for_an_unconfigured_function_are_the_defaults() -> None:
    settings = Settings.from_env({"AMWORKER_TIME_LIMIT": "60", "AMWORKER_SOFT_TIME_LIMIT": "50",
                                  "AMWORKER_MAX_OUTPUT_BYTES": "10", "AMWORKER_DEFAULT_QUEUE": "q"})

    assert settings.options_for("anything") == FunctionOptions(
        slices=None, queue="q", time_limit=60.0, soft_time_limit=50.0, max_output_bytes=10
    )


def test_options_for_fills_unset_function_options_from_the_defaults(tmp_path: Path) -> None:
    settings = settings_with_file(
        tmp_path,
        '[defaults]\ntime_limit = 100\n[functions."a"]\nqueue = "heavy"\nsoft_time_limit = 90\n',
    )

    assert settings.options_for("a") == FunctionOptions(
        slices=None, queue="heavy", time_limit=100.0, soft_time_limit=90.0,
        max_output_bytes=config.DEFAULT_MAX_OUTPUT_BYTES,
    )


def test_queues_lists_the_default_first_then_the_others_sorted_once(tmp_path: Path) -> None:
    settings = settings_with_file(tmp_path, """
[functions."a"]
queue = "zeta"
[functions."b"]
queue = "alpha"
[functions."c"]
queue = "zeta"
[functions."d"]
queue = "amworker"
[functions."e"]
slices = 2
""")

    assert settings.queues() == ("amworker", "alpha", "zeta")


def test_queues_without_functions_is_just_the_default() -> None:
    assert Settings.from_env({"AMWORKER_DEFAULT_QUEUE": "main"}).queues() == ("main",)


def test_stock_engine_selects_the_url_scheme_and_its_port() -> None:
    settings = Settings.from_env({
        "ARCHIVEMATICA_MCPCLIENT_CLIENT_ENGINE": "django.db.backends.postgresql",
        "ARCHIVEMATICA_MCPCLIENT_CLIENT_PASSWORD": "s3cret",
    })

    assert settings.database_url == "postgres://archivematica:s3cret@localhost:5432/MCP"


def test_stock_engine_that_is_not_a_server_database_is_refused() -> None:
    with pytest.raises(ConfigError, match="ARCHIVEMATICA_MCPCLIENT_CLIENT_ENGINE"):
        Settings.from_env({"ARCHIVEMATICA_MCPCLIENT_CLIENT_ENGINE": "django.db.backends.oracle"})


def test_stock_directories_and_prometheus_settings_are_fallbacks() -> None:
    settings = Settings.from_env({
        "ARCHIVEMATICA_MCPCLIENT_MCPCLIENT_WATCHDIRECTORYPATH": "/w/",
        "ARCHIVEMATICA_MCPCLIENT_MCPCLIENT_REJECTEDDIRECTORY": "/r/",
        "ARCHIVEMATICA_MCPCLIENT_MCPCLIENT_PROMETHEUS_BIND_ADDRESS": "0.0.0.0",
        "ARCHIVEMATICA_MCPCLIENT_MCPCLIENT_PROMETHEUS_BIND_PORT": "7999",
    })

    assert (settings.watch_directory, settings.rejected_directory) == ("/w/", "/r/")
    assert (settings.metrics_address, settings.worker_metrics_port) == ("0.0.0.0", 7999)


def test_pool_processes_are_recycled_by_default_and_can_be_told_not_to() -> None:
    from worker.celery import celery_config

    default = celery_config(Settings.from_env({}))
    off = celery_config(Settings.from_env({"AMWORKER_MAX_TASKS_PER_CHILD": "0",
                                           "AMWORKER_MAX_MEMORY_PER_CHILD": "0"}))

    assert default["worker_max_tasks_per_child"] == 500
    assert default["worker_max_memory_per_child"] == 1024 * 1024
    assert off["worker_max_tasks_per_child"] is None
    assert off["worker_max_memory_per_child"] is None
