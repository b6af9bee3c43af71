//! What an operator of a deployed stack relies on, held to template.yaml: every function logs
//! JSON into a log group with a retention and has error and throttle alarms, every table a
//! throttle alarm, the sweeper a retry policy, a dead-letter queue and a "not running" alarm,
//! and the dashboard is valid JSON naming only what the template declares.
//!
//! The per-function and per-table resources come from `Fn::ForEach` blocks (the
//! `AWS::LanguageExtensions` transform); these tests hold each block's list to the template's
//! functions and tables, so a new function without its log group or alarms fails here.

use std::collections::BTreeSet;

use serde_norway::Value;
use switchboard_local::workspace_root;

fn template() -> Value {
    let raw = std::fs::read_to_string(workspace_root().join("template.yaml")).expect("template");
    serde_norway::from_str(&raw).expect("template.yaml parses")
}

fn resources(t: &Value) -> &serde_norway::Mapping {
    t["Resources"].as_mapping().expect("Resources")
}

/// Logical ids of the resources of one type.
fn of_type(t: &Value, kind: &str) -> BTreeSet<String> {
    resources(t)
        .iter()
        .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some(kind))
        .filter_map(|(k, _)| k.as_str().map(String::from))
        .collect()
}

/// A `Fn::ForEach::<name>` block: its identifier, its list, and its template of resources.
fn for_each<'a>(
    t: &'a Value,
    name: &str,
) -> (&'a str, BTreeSet<String>, &'a serde_norway::Mapping) {
    let key = format!("Fn::ForEach::{name}");
    let block = resources(t)
        .get(key.as_str())
        .and_then(Value::as_sequence)
        .unwrap_or_else(|| panic!("template.yaml has no {key} block"));
    let identifier = block[0].as_str().expect("identifier");
    let list = block[1]
        .as_sequence()
        .expect("list")
        .iter()
        .map(|v| v.as_str().expect("name").to_string())
        .collect();
    let body = block[2].as_mapping().expect("resources");
    (identifier, list, body)
}

/// `!Tag value` as (tag, value); a plain value as ("", value).
fn tagged(v: &Value) -> (String, &Value) {
    match v {
        Value::Tagged(t) => (t.tag.to_string(), &t.value),
        other => (String::new(), other),
    }
}

fn is_ref_to(v: &Value, target: &str) -> bool {
    let (tag, inner) = tagged(v);
    (tag == "!Ref" && inner.as_str() == Some(target))
        || v.get("Ref").and_then(Value::as_str) == Some(target)
}

fn function_names(t: &Value) -> BTreeSet<String> {
    of_type(t, "AWS::Serverless::Function")
        .into_iter()
        .map(|id| {
            id.strip_suffix("Function")
                .unwrap_or_else(|| panic!("function {id}: logical ids end in Function"))
                .to_string()
        })
        .collect()
}

fn alarm_actions_notify_the_topic(id: &str, alarm: &Value) {
    for actions in ["AlarmActions", "OKActions"] {
        let (tag, args) = tagged(&alarm["Properties"][actions]);
        assert!(
            tag == "!If" && args[0].as_str() == Some("HasAlarmTopic"),
            "{id}.{actions} must notify AlarmTopicArn when one is given (!If [HasAlarmTopic, ...])"
        );
    }
}

#[test]
fn every_function_logs_json_to_its_own_log_group_with_the_retention() {
    let t = template();
    let logging = &t["Globals"]["Function"]["LoggingConfig"];
    assert_eq!(
        logging["LogFormat"].as_str(),
        Some("JSON"),
        "Globals: JSON logs"
    );

    let (id, names, body) = for_each(&t, "FunctionOperations");
    assert_eq!(id, "Name");
    assert_eq!(
        names,
        function_names(&t),
        "Fn::ForEach::FunctionOperations must list every function of the template, and only those"
    );
    let group = &body[&Value::from("${Name}LogGroup")];
    assert_eq!(group["Type"].as_str(), Some("AWS::Logs::LogGroup"));
    assert!(
        is_ref_to(&group["Properties"]["RetentionInDays"], "LogRetentionDays"),
        "log groups keep LogRetentionDays"
    );
    assert_eq!(
        t["Parameters"]["LogRetentionDays"]["Default"].as_u64(),
        Some(30)
    );
    for name in &names {
        let function = &resources(&t)[&Value::from(format!("{name}Function"))];
        assert!(
            is_ref_to(
                &function["Properties"]["LoggingConfig"]["LogGroup"],
                &format!("{name}LogGroup")
            ),
            "{name}Function must log to {name}LogGroup (LoggingConfig.LogGroup), not to a group Lambda creates without a retention"
        );
    }
}

#[test]
fn every_function_has_an_errors_and_a_throttles_alarm() {
    let t = template();
    let (_, _, body) = for_each(&t, "FunctionOperations");
    for (suffix, metric) in [("ErrorsAlarm", "Errors"), ("ThrottlesAlarm", "Throttles")] {
        let id = format!("${{Name}}{suffix}");
        let alarm = &body[&Value::from(id.as_str())];
        assert_eq!(
            alarm["Type"].as_str(),
            Some("AWS::CloudWatch::Alarm"),
            "{id}"
        );
        let p = &alarm["Properties"];
        assert_eq!(p["Namespace"].as_str(), Some("AWS/Lambda"), "{id}");
        assert_eq!(p["MetricName"].as_str(), Some(metric), "{id}");
        let dimension = &p["Dimensions"][0];
        assert_eq!(dimension["Name"].as_str(), Some("FunctionName"), "{id}");
        let (tag, target) = tagged(&dimension["Value"]);
        assert_eq!(tag, "!Ref", "{id}: the dimension is the function's name");
        assert_eq!(
            target["Fn::Sub"].as_str(),
            Some("${Name}Function"),
            "{id}: the alarm watches the function of its own name"
        );
        alarm_actions_notify_the_topic(&id, alarm);
    }
}

#[test]
fn every_table_has_a_throttle_alarm() {
    let t = template();
    let (id, tables, body) = for_each(&t, "TableOperations");
    assert_eq!(
        tables,
        of_type(&t, "AWS::DynamoDB::Table"),
        "Fn::ForEach::TableOperations must list every table"
    );
    let alarm = &body[&Value::from(format!("${{{id}}}ThrottlesAlarm"))];
    let metrics: BTreeSet<&str> = alarm["Properties"]["Metrics"]
        .as_sequence()
        .expect("metric math")
        .iter()
        .filter_map(|m| m["MetricStat"]["Metric"]["MetricName"].as_str())
        .collect();
    assert_eq!(
        metrics,
        BTreeSet::from(["ReadThrottleEvents", "WriteThrottleEvents"])
    );
    alarm_actions_notify_the_topic("table throttles", alarm);
}

#[test]
fn the_sweeper_is_retried_dead_lettered_and_alarmed_when_it_stops_running() {
    let t = template();
    let r = resources(&t);
    let sweep = &r[&Value::from("SweeperFunction")]["Properties"]["Events"]["Sweep"]["Properties"];
    assert!(
        sweep["RetryPolicy"]["MaximumRetryAttempts"]
            .as_u64()
            .is_some()
    );
    let (tag, target) = tagged(&sweep["DeadLetterConfig"]["Arn"]);
    assert_eq!(
        (tag.as_str(), target.as_str()),
        ("!GetAtt", Some("SweeperDeadLetterQueue.Arn"))
    );
    assert_eq!(
        r[&Value::from("SweeperDeadLetterQueue")]["Type"].as_str(),
        Some("AWS::SQS::Queue")
    );

    let not_running = &r[&Value::from("SweeperNotRunningAlarm")]["Properties"];
    assert_eq!(not_running["MetricName"].as_str(), Some("Invocations"));
    assert_eq!(
        not_running["TreatMissingData"].as_str(),
        Some("breaching"),
        "a sweeper that never runs reports no data: that must alarm"
    );
    assert!(is_ref_to(
        &not_running["Dimensions"][0]["Value"],
        "SweeperFunction"
    ));
    for id in [
        "SweeperNotRunningAlarm",
        "SweeperDeadLettersAlarm",
        "HttpApi5xxRateAlarm",
    ] {
        alarm_actions_notify_the_topic(id, &r[&Value::from(id)]);
    }
}

#[test]
fn the_dashboard_is_json_and_names_only_what_the_template_declares() {
    let t = template();
    let r = resources(&t);
    let (tag, body) = tagged(&r[&Value::from("Dashboard")]["Properties"]["DashboardBody"]);
    assert_eq!(tag, "!Sub");
    let body = body.as_str().expect("DashboardBody is one !Sub string");

    let mut known: BTreeSet<String> = r
        .keys()
        .filter_map(|k| k.as_str().map(String::from))
        .collect();
    known.extend(
        t["Parameters"]
            .as_mapping()
            .expect("Parameters")
            .keys()
            .filter_map(|k| k.as_str().map(String::from)),
    );
    // Substitute every ${X} / ${X.Attr} as CloudFormation would, checking each names something.
    let mut json = String::new();
    let mut rest = body;
    while let Some(start) = rest.find("${") {
        json.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closed ${") + start;
        let name = &rest[start + 2..end];
        let resource = name.split('.').next().unwrap_or(name);
        assert!(
            resource.starts_with("AWS::") || known.contains(resource),
            "the dashboard names {name}, which template.yaml does not declare"
        );
        json.push('x');
        rest = &rest[end + 1..];
    }
    json.push_str(rest);
    let parsed: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("DashboardBody is not JSON: {e}"));
    let widgets = parsed["widgets"].as_array().expect("widgets");
    assert!(widgets.len() >= 6, "{} widgets", widgets.len());
}

#[test]
fn the_sfu_image_comes_from_the_stacks_own_repository_unless_one_is_given() {
    let t = template();
    let r = resources(&t);
    assert_eq!(
        r[&Value::from("SfuRepository")]["Type"].as_str(),
        Some("AWS::ECR::Repository")
    );
    assert_eq!(t["Parameters"]["SfuImage"]["Default"].as_str(), Some(""));
    let image =
        &r[&Value::from("SfuTaskDefinition")]["Properties"]["ContainerDefinitions"][0]["Image"];
    let (tag, args) = tagged(image);
    assert_eq!(tag, "!If", "Image: !If [UseStackRepository, ...]");
    assert_eq!(args[0].as_str(), Some("UseStackRepository"));
    let (sub, uri) = tagged(&args[1]);
    assert_eq!(
        (sub.as_str(), uri.as_str()),
        (
            "!Sub",
            Some("${SfuRepository.RepositoryUri}:${SfuImageTag}")
        )
    );
    assert!(is_ref_to(&args[2], "SfuImage"));
    let (_, output) = tagged(&t["Outputs"]["SfuRepositoryUri"]["Value"]);
    assert_eq!(output.as_str(), Some("SfuRepository.RepositoryUri"));
}

fn run(program: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(program)
        .args(args)
        .current_dir(workspace_root())
        // As on a machine with no AWS account: no credentials, no profile, a bare PATH.
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", std::env::temp_dir())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/ensure-deps.sh installs it)"))
}

#[test]
fn the_deploy_and_image_scripts_are_clean_and_explain_themselves_offline() {
    for script in ["scripts/deploy.sh", "scripts/sfu-image.sh"] {
        let syntax = run("bash", &["-n", script]);
        assert!(syntax.status.success(), "bash -n {script}: {syntax:?}");
        let lint = run("shellcheck", &[script]);
        assert!(
            lint.status.success(),
            "shellcheck {script}:\n{}",
            String::from_utf8_lossy(&lint.stdout)
        );
        let help = run(script, &["--help"]);
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(
            help.status.success() && text.contains("--push") | text.contains("--guided"),
            "{script} --help without credentials: {help:?}"
        );
    }
    let help = run("scripts/deploy.sh", &["--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    for option in [
        "--guided",
        "--stack-name",
        "--region",
        "--platform",
        "--skip-image",
    ] {
        assert!(
            text.contains(option),
            "deploy.sh --help names {option}:\n{text}"
        );
    }
    let wrong = run("scripts/deploy.sh", &["--no-such-option"]);
    assert_eq!(
        wrong.status.code(),
        Some(2),
        "an unknown option is refused: {wrong:?}"
    );
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("--no-such-option"));
}

#[test]
fn the_network_is_made_only_when_no_subnets_are_given_and_used_everywhere_then() {
    let t = template();
    let r = resources(&t);
    let made: Vec<&str> = r
        .iter()
        .filter(|(_, v)| {
            v.get("Type")
                .and_then(Value::as_str)
                .is_some_and(|k| k.starts_with("AWS::EC2::"))
        })
        .filter_map(|(k, _)| k.as_str())
        .collect();
    for kind in ["VPC", "Subnet", "InternetGateway", "SecurityGroup", "Route"] {
        assert!(
            made.iter()
                .any(|id| r[&Value::from(*id)]["Type"].as_str()
                    == Some(&format!("AWS::EC2::{kind}"))),
            "the template makes an AWS::EC2::{kind} when no subnets are given"
        );
    }
    for id in &made {
        assert_eq!(
            r[&Value::from(*id)]["Condition"].as_str(),
            Some("CreateNetwork"),
            "{id} must exist only under CreateNetwork (no Subnets given)"
        );
    }
    let (tag, args) = tagged(&t["Conditions"]["CreateNetwork"]);
    assert_eq!(tag, "!Equals");
    assert_eq!(
        args[1].as_str(),
        Some(""),
        "CreateNetwork: Subnets is empty"
    );
    // Two availability zones, public: tasks get a public IP without a NAT gateway.
    let zones: BTreeSet<String> = made
        .iter()
        .map(|id| &r[&Value::from(*id)])
        .filter(|v| v["Type"].as_str() == Some("AWS::EC2::Subnet"))
        .map(|v| {
            assert_eq!(v["Properties"]["MapPublicIpOnLaunch"].as_bool(), Some(true));
            format!("{:?}", v["Properties"]["AvailabilityZone"])
        })
        .collect();
    assert_eq!(
        zones.len(),
        2,
        "public subnets in two availability zones: {zones:?}"
    );
    let group = made
        .iter()
        .map(|id| &r[&Value::from(*id)])
        .find(|v| v["Type"].as_str() == Some("AWS::EC2::SecurityGroup"))
        .expect("security group");
    let ingress = group["Properties"]["SecurityGroupIngress"]
        .as_sequence()
        .expect("ingress");
    assert!(
        ingress
            .iter()
            .all(|rule| rule["IpProtocol"].as_str() == Some("udp")),
        "only media (UDP) comes in"
    );
    assert!(
        ingress
            .iter()
            .any(|rule| is_ref_to(&rule["FromPort"], "MediaUdpPort")),
        "the SFU's media port is admitted"
    );

    // Wherever a function or the template uses the subnets or groups, it takes the made ones
    // under the condition.
    let raw = std::fs::read_to_string(workspace_root().join("template.yaml")).expect("template");
    for (i, line) in raw.lines().enumerate() {
        if line.contains("!Ref Subnets") || line.contains("!Ref SecurityGroups") {
            assert!(
                line.contains("!If [CreateNetwork") || line.contains("!Join [\"\", !Ref"),
                "template.yaml line {}: the given subnets/groups are used without the CreateNetwork choice: {line}",
                i + 1
            );
        }
    }
}

/// The alarms on the functions' own metrics watch names the functions emit
/// (`switchboard::metrics::name`), in the namespace they emit them to.
#[test]
fn the_orphan_and_capacity_alarms_watch_emitted_metrics() {
    use switchboard::metrics::{NAMESPACE, name};
    let t = template();
    let r = resources(&t);
    for (id, metric) in [
        ("OrphansStoppedAlarm", name::ORPHANS_STOPPED),
        ("CapacityRefusalsAlarm", name::CAPACITY_REFUSALS),
    ] {
        let alarm = &r[&Value::from(id)];
        let p = &alarm["Properties"];
        assert_eq!(
            (
                p["Namespace"].as_str(),
                p["MetricName"].as_str(),
                p["Statistic"].as_str(),
                p["ComparisonOperator"].as_str(),
                p["Threshold"].as_i64(),
            ),
            (
                Some(NAMESPACE),
                Some(metric),
                Some("Sum"),
                Some("GreaterThanThreshold"),
                Some(0)
            ),
            "{id}"
        );
        assert!(
            p.get("Dimensions").is_none(),
            "{id}: the metric has no dimensions"
        );
        alarm_actions_notify_the_topic(id, alarm);
    }
}

/// Alarms the template makes once its `Fn::ForEach` blocks are expanded, and the metrics they
/// watch (CloudWatch bills an alarm per metric it watches).
fn alarms_and_watched_metrics(t: &Value) -> (usize, usize) {
    let watched = |alarm: &Value| {
        alarm["Properties"]["Metrics"].as_sequence().map_or(1, |m| {
            m.iter().filter(|m| m.get("MetricStat").is_some()).count()
        })
    };
    let mut alarms = 0;
    let mut metrics = 0;
    for (_, resource) in resources(t) {
        if resource.get("Type").and_then(Value::as_str) == Some("AWS::CloudWatch::Alarm") {
            alarms += 1;
            metrics += watched(resource);
        }
    }
    for block in ["FunctionOperations", "TableOperations"] {
        let (_, list, body) = for_each(t, block);
        for (_, resource) in body {
            if resource.get("Type").and_then(Value::as_str) == Some("AWS::CloudWatch::Alarm") {
                alarms += list.len();
                metrics += list.len() * watched(resource);
            }
        }
    }
    (alarms, metrics)
}

/// The README's idle cost names the number of alarms the template makes and what they cost.
#[test]
fn the_readme_states_what_the_alarms_cost() {
    let (alarms, metrics) = alarms_and_watched_metrics(&template());
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README");
    let deploying = readme
        .split("## Deploying")
        .nth(1)
        .expect("a Deploying section");
    assert!(
        deploying.contains(&format!("{alarms} alarms")),
        "README's Deploying section names {alarms} alarms"
    );
    let cost = format!("${:.2}", metrics as f64 * 0.10);
    assert!(
        deploying.contains(&cost),
        "{alarms} alarms watching {metrics} metrics cost {cost} a month: README says so"
    );
}
