"""The synthesized stack: resources, key properties, security-group rules, IAM, scaling."""

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template
from conftest import FULL_CONTEXT, Synth, synthesize

from docproc_infra.config import Config
from docproc_infra.scaling import SCALE_OUT_STEPS
from docproc_infra.service import METRIC_NAMESPACE, QUEUE_DEPTH_METRIC


@pytest.fixture(scope="session")
def t(default: Synth) -> Template:
    return Template.from_json(default.template)


def _flatten(node: Any) -> str:
    """A CloudFormation value as readable text: Fn::Join joined, references as ${Ref:X} / ${X.Attr}."""
    if isinstance(node, str):
        return node
    if isinstance(node, dict):
        if "Fn::Join" in node:
            delimiter, items = node["Fn::Join"]
            return delimiter.join(_flatten(i) for i in items)
        if "Fn::Base64" in node:
            return _flatten(node["Fn::Base64"])
        if "Ref" in node:
            return "${Ref:" + node["Ref"] + "}"
        if "Fn::GetAtt" in node:
            return "${" + ".".join(node["Fn::GetAtt"]) + "}"
    return json.dumps(node)


def user_data(synth: Synth, role: str) -> str:
    for lt in synth.of_type("AWS::EC2::LaunchTemplate").values():
        text = _flatten(lt["Properties"]["LaunchTemplateData"]["UserData"])
        if f"\nROLE={role}\n" in text:
            return text
    raise AssertionError(f"no launch template for role {role}")


def asg(synth: Synth, role: str) -> dict:
    for group in synth.of_type("AWS::AutoScaling::AutoScalingGroup").values():
        tags = {t["Key"]: t["Value"] for t in group["Properties"].get("Tags", [])}
        if tags.get("docproc:role") == role:
            return group
    raise AssertionError(f"no Auto Scaling group for role {role}")


def logical_id(synth: Synth, resource: dict) -> str:
    return next(k for k, v in synth.resources.items() if v is resource)


def sg_id(synth: Synth, description_start: str) -> str:
    found = [
        k
        for k, v in synth.of_type("AWS::EC2::SecurityGroup").items()
        if v["Properties"]["GroupDescription"].startswith(description_start)
    ]
    assert len(found) == 1, (description_start, found)
    return found[0]


def ingress_rules(synth: Synth, group: str) -> list[dict]:
    """Every ingress rule of a security group: inline ones and AWS::EC2::SecurityGroupIngress."""
    rules = [
        r["Properties"]
        for r in synth.of_type("AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [group, "GroupId"]}
    ]
    return rules + synth.resources[group]["Properties"].get("SecurityGroupIngress", [])


def source_group(rule: dict) -> str | None:
    src = rule.get("SourceSecurityGroupId")
    return src["Fn::GetAtt"][0] if src else None


def policy_statements(synth: Synth, role_prefix: str) -> list[dict]:
    statements = []
    for policy in synth.of_type("AWS::IAM::Policy").values():
        roles = [r["Ref"] for r in policy["Properties"]["Roles"]]
        if any(r.startswith(role_prefix) for r in roles):
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


# --- network ---------------------------------------------------------------------------------------


def test_vpc_two_azs_three_tiers_with_nat_and_flow_logs(default: Synth, t: Template) -> None:
    t.resource_count_is("AWS::EC2::VPC", 1)
    t.resource_count_is("AWS::EC2::Subnet", 6)
    t.resource_count_is("AWS::EC2::NatGateway", 2)
    azs = sorted(s["Properties"]["AvailabilityZone"] for s in default.of_type("AWS::EC2::Subnet").values())
    assert azs == ["us-east-1a"] * 3 + ["us-east-1b"] * 3
    public = [s for s in default.of_type("AWS::EC2::Subnet").values() if s["Properties"]["MapPublicIpOnLaunch"]]
    assert len(public) == 2
    t.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "ALL", "LogDestinationType": "s3"})
    t.has_resource_properties("AWS::EC2::VPCEndpoint", {"VpcEndpointType": "Gateway"})


def test_region_and_azs_come_from_context(full: Synth) -> None:
    assert full.stack.region == "eu-west-1"
    azs = {s["Properties"]["AvailabilityZone"] for s in full.of_type("AWS::EC2::Subnet").values()}
    assert azs == {"eu-west-1b", "eu-west-1c"}


def test_synthesis_needs_no_lookups(default: Synth, full: Synth) -> None:
    for synth in (default, full):
        manifest = json.loads((synth.outdir / "manifest.json").read_text())
        assert not manifest.get("missing"), "context lookups would need an AWS account at synth time"


# --- load balancer and API --------------------------------------------------------------------------


def test_alb_http_by_default_forwarding_to_api_health_checked_on_health(default: Synth, t: Template) -> None:
    t.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        {
            "Scheme": "internet-facing",
            "LoadBalancerAttributes": Match.array_with(
                [
                    {"Key": "routing.http.drop_invalid_header_fields.enabled", "Value": "true"},
                    {"Key": "access_logs.s3.enabled", "Value": "true"},
                ]
            ),
        },
    )
    listener = default.one("AWS::ElasticLoadBalancingV2::Listener")["Properties"]
    assert listener["Port"] == 80 and listener["Protocol"] == "HTTP"
    assert listener["DefaultActions"][0]["Type"] == "forward"
    t.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        {"Port": 8000, "HealthCheckPath": "/health", "Matcher": {"HttpCode": "200"}},
    )


def test_https_when_a_certificate_is_given(full: Synth) -> None:
    listeners = {
        lst["Properties"]["Port"]: lst["Properties"]
        for lst in full.of_type("AWS::ElasticLoadBalancingV2::Listener").values()
    }
    assert set(listeners) == {80, 443}
    assert listeners[443]["Protocol"] == "HTTPS"
    assert listeners[443]["Certificates"] == [{"CertificateArn": FULL_CONTEXT["certificateArn"]}]
    assert listeners[80]["DefaultActions"][0]["Type"] == "redirect"
    # behind CloudFront, only requests carrying its secret header are forwarded
    assert listeners[443]["DefaultActions"][0]["Type"] == "fixed-response"
    rule = full.one("AWS::ElasticLoadBalancingV2::ListenerRule")["Properties"]
    assert rule["Conditions"][0]["HttpHeaderConfig"]["HttpHeaderName"] == "X-Origin-Verify"
    assert rule["Actions"][0]["Type"] == "forward"


def test_api_group_behind_the_alb_with_elb_health_checks(default: Synth) -> None:
    props = asg(default, "api")["Properties"]
    assert (props["MinSize"], props["MaxSize"]) == ("2", "6")
    assert props["HealthCheckType"] == "ELB"
    assert props["TargetGroupARNs"]
    policies = [
        p["Properties"]
        for p in default.of_type("AWS::AutoScaling::ScalingPolicy").values()
        if p["Properties"]["AutoScalingGroupName"] == {"Ref": logical_id(default, asg(default, "api"))}
    ]
    assert [p["PolicyType"] for p in policies] == ["TargetTrackingScaling"]


@pytest.mark.parametrize("role", ["api", "worker", "watchdog"])
def test_launch_templates_imdsv2_encrypted_ebs_and_the_image(default: Synth, role: str) -> None:
    lt = next(
        v["Properties"]["LaunchTemplateData"]
        for v in default.of_type("AWS::EC2::LaunchTemplate").values()
        if f"\nROLE={role}\n" in _flatten(v["Properties"]["LaunchTemplateData"]["UserData"])
    )
    assert lt["MetadataOptions"]["HttpTokens"] == "required"
    assert lt["MetadataOptions"]["HttpPutResponseHopLimit"] == 2  # containers reach the instance role
    ebs = lt["BlockDeviceMappings"][0]["Ebs"]
    assert ebs["Encrypted"] is True and ebs["VolumeType"] == "gp3"
    text = user_data(default, role)
    assert ".dkr.ecr.us-east-1." in text and "/docproc:latest" in text  # the ECR repository from context
    assert 'docker run "${args[@]}" "$IMAGE" "$ROLE"' in text
    assert "/opt/docproc/boot.sh" in text
    assert len(text.encode()) < 16 * 1024, "EC2 user data is limited to 16 KB"


def test_image_repository_and_tag_from_context(outdirs) -> None:
    synth = synthesize(
        {"ecrRepository": "team/docproc", "imageTag": "v1.2.3", "nagAcknowledgments": "true"}, outdirs / "image"
    )
    assert "/team/docproc:v1.2.3\n" in user_data(synth, "api")


def test_role_specific_boot_settings(default: Synth) -> None:
    assert "CLOUDWATCH_METRICS=true" in user_data(default, "watchdog")
    for role in ("api", "worker"):
        assert "CLOUDWATCH_METRICS=false" in user_data(default, role)
    assert "STOP_TIMEOUT=14700" in user_data(default, "worker")  # JOB_TIMEOUT_MAX_S + margin
    assert "/opt/docproc/drain.sh" in user_data(default, "worker")
    assert "cat > /opt/docproc/drain.sh" not in user_data(default, "api")


# --- workers: scaling on queue depth, graceful scale-in -----------------------------------------------


def test_worker_group_scales_on_queue_depth(default: Synth) -> None:
    worker = asg(default, "worker")
    assert (worker["Properties"]["MinSize"], worker["Properties"]["MaxSize"]) == ("1", "8")
    ref = {"Ref": logical_id(default, worker)}
    alarms = [a["Properties"] for a in default.of_type("AWS::CloudWatch::Alarm").values()]
    assert len(alarms) == 2
    for alarm in alarms:
        assert alarm["Namespace"] == METRIC_NAMESPACE and alarm["MetricName"] == QUEUE_DEPTH_METRIC
        assert alarm["Dimensions"] == [{"Name": "Queue", "Value": "ingest"}]
        assert alarm["Statistic"] == "Maximum" and alarm["Period"] == 60
    by_op = {a["ComparisonOperator"]: a for a in alarms}
    out, scale_in = by_op["GreaterThanOrEqualToThreshold"], by_op["LessThanOrEqualToThreshold"]
    assert out["Threshold"] == SCALE_OUT_STEPS[0][0] and out["EvaluationPeriods"] == 2
    assert scale_in["Threshold"] == 0 and scale_in["EvaluationPeriods"] == 15  # empty for 15 minutes
    steps = {
        json.dumps(p["Properties"]["StepAdjustments"])
        for p in default.of_type("AWS::AutoScaling::ScalingPolicy").values()
        if p["Properties"]["AutoScalingGroupName"] == ref
    }
    adjustments = sorted(s["ScalingAdjustment"] for text in steps for s in json.loads(text))
    assert adjustments == [-1, 1, 2, 4]


def test_worker_scale_in_waits_for_the_job_in_hand(default: Synth, t: Template) -> None:
    worker = asg(default, "worker")
    assert worker["Properties"]["NewInstancesProtectedFromScaleIn"] is False
    t.has_resource_properties(
        "AWS::AutoScaling::LifecycleHook",
        {
            "AutoScalingGroupName": {"Ref": logical_id(default, worker)},
            "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
            "DefaultResult": "CONTINUE",
            "HeartbeatTimeout": 900,
            "LifecycleHookName": "docproc-drain",
        },
    )
    statements = policy_statements(default, "WorkerRole")
    drain = next(s for s in statements if s.get("Sid") == "CompleteOwnDrain")
    assert set(drain["Action"]) == {"autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"}
    assert logical_id(default, worker) in json.dumps(drain["Resource"])


def test_exactly_one_watchdog_publishing_queue_depth(default: Synth) -> None:
    props = asg(default, "watchdog")["Properties"]
    assert (props["MinSize"], props["MaxSize"]) == ("1", "1")
    metric = [s for s in policy_statements(default, "WatchdogRole") if s["Action"] == "cloudwatch:PutMetricData"]
    assert metric == [
        {
            "Sid": "PublishQueueDepth",
            "Action": "cloudwatch:PutMetricData",
            "Effect": "Allow",
            "Resource": "*",
            "Condition": {"StringEquals": {"cloudwatch:namespace": METRIC_NAMESPACE}},
        }
    ]
    for role in ("ApiRole", "WorkerRole"):
        assert "cloudwatch:PutMetricData" not in json.dumps(policy_statements(default, role))


# --- data stores ---------------------------------------------------------------------------------------


def test_documentdb_tls_encrypted_credentials_in_secrets_manager(default: Synth, t: Template) -> None:
    t.has_resource_properties(
        "AWS::DocDB::DBCluster",
        {
            "StorageEncrypted": True,
            "Port": 27117,
            "BackupRetentionPeriod": 7,
            "DeletionProtection": True,
            "EnableCloudwatchLogsExports": ["audit", "profiler"],
        },
    )
    cluster = default.one("AWS::DocDB::DBCluster")["Properties"]
    for key in ("MasterUsername", "MasterUserPassword"):
        assert "{{resolve:secretsmanager:" in _flatten(cluster[key])
    t.has_resource_properties(
        "AWS::DocDB::DBClusterParameterGroup", {"Parameters": Match.object_like({"tls": "enabled"})}
    )
    t.resource_count_is("AWS::DocDB::DBInstance", 2)


def test_valkey_tls_auth_noeviction_multi_az(default: Synth, t: Template) -> None:
    group = default.one("AWS::ElastiCache::ReplicationGroup")["Properties"]
    assert group["Engine"] == "valkey"
    assert group["TransitEncryptionEnabled"] is True and group["TransitEncryptionMode"] == "required"
    assert group["AtRestEncryptionEnabled"] is True
    assert group["MultiAZEnabled"] is True and group["AutomaticFailoverEnabled"] is True
    assert group["NumCacheClusters"] == 2
    assert "resolve:secretsmanager" in _flatten(group["AuthToken"])  # a dynamic reference, never the value
    t.has_resource_properties(
        "AWS::ElastiCache::ParameterGroup",
        {"CacheParameterGroupFamily": "valkey8", "Properties": {"maxmemory-policy": "noeviction"}},
    )


def test_aurora_serverless_v2_postgres_for_pgvector(default: Synth, t: Template) -> None:
    t.has_resource_properties(
        "AWS::RDS::DBCluster",
        {
            "Engine": "aurora-postgresql",
            "EngineVersion": Match.string_like_regexp(r"^1[6-9]\."),  # pgvector 0.8 with HNSW
            "ServerlessV2ScalingConfiguration": {"MinCapacity": 0.5, "MaxCapacity": 8},
            "StorageEncrypted": True,
            "EnableIAMDatabaseAuthentication": True,
            "DatabaseName": "docproc",
            "DeletionProtection": True,
        },
    )
    t.has_resource_properties("AWS::RDS::DBClusterParameterGroup", {"Parameters": {"rds.force_ssl": "1"}})
    instances = default.of_type("AWS::RDS::DBInstance")
    assert len(instances) == 2 and all(
        i["Properties"]["DBInstanceClass"] == "db.serverless" for i in instances.values()
    )


def test_uploads_bucket_encrypted_private_ssl_only(default: Synth, t: Template) -> None:
    t.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketEncryption": Match.any_value(),
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "LoggingConfiguration": Match.object_like({"LogFilePrefix": "s3-uploads/"}),
        },
    )
    for policy in default.of_type("AWS::S3::BucketPolicy").values():
        denies = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
        assert any(s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in denies)


# --- least privilege ---------------------------------------------------------------------------------


def test_data_stores_reachable_only_from_the_service_groups(default: Synth) -> None:
    services = {sg_id(default, f"docproc {n}") for n in ("API instances", "worker instances", "watchdog instance")}
    for store, port in (("DocumentDB", 27117), ("ElastiCache", 6479), ("Aurora", 5532)):
        rules = ingress_rules(default, sg_id(default, store))
        assert {source_group(r) for r in rules} == services, store
        assert all((r["FromPort"], r["ToPort"], r["IpProtocol"]) == (port, port, "tcp") for r in rules), store
        assert not any("CidrIp" in r for r in rules), store


def test_only_the_load_balancer_is_open_and_it_reaches_only_the_api_port(default: Synth) -> None:
    alb, api = sg_id(default, "docproc load balancer"), sg_id(default, "docproc API instances")
    open_rules = [
        (k, r)
        for k in default.of_type("AWS::EC2::SecurityGroup")
        for r in ingress_rules(default, k)
        if r.get("CidrIp") == "0.0.0.0/0"
    ]
    assert {k for k, _ in open_rules} == {alb}
    assert {r["FromPort"] for _, r in open_rules} == {80}
    api_rules = ingress_rules(default, api)
    assert {source_group(r) for r in api_rules} == {alb}
    assert {r["FromPort"] for r in api_rules} == {8000}
    for group in (sg_id(default, "docproc worker instances"), sg_id(default, "docproc watchdog instance")):
        assert ingress_rules(default, group) == []


def test_egress_is_https_and_the_data_stores_only(default: Synth) -> None:
    stores = {sg_id(default, n): p for n, p in (("DocumentDB", 27117), ("ElastiCache", 6479), ("Aurora", 5532))}
    for name in ("API instances", "worker instances", "watchdog instance"):
        group = sg_id(default, f"docproc {name}")
        inline = default.resources[group]["Properties"]["SecurityGroupEgress"]
        assert [(r["CidrIp"], r["FromPort"], r["ToPort"]) for r in inline] == [("0.0.0.0/0", 443, 443)]
        separate = {
            (r["Properties"]["DestinationSecurityGroupId"]["Fn::GetAtt"][0], r["Properties"]["FromPort"])
            for r in default.of_type("AWS::EC2::SecurityGroupEgress").values()
            if r["Properties"]["GroupId"] == {"Fn::GetAtt": [group, "GroupId"]}
        }
        assert separate == set(stores.items()), name
    for store in stores:  # the stores open no connection themselves
        egress = default.resources[store]["Properties"]["SecurityGroupEgress"]
        assert [r["Description"] for r in egress] == ["Disallow all traffic"]


def test_iam_least_privilege(default: Synth) -> None:
    for role in ("ApiRole", "WorkerRole", "WatchdogRole"):
        statements = policy_statements(default, role)
        actions = [a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
        assert not [a for a in actions if a.endswith(":*") or a == "*"], role
        for s in statements:
            if any(a.startswith("s3:") for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])):
                text = json.dumps(s["Resource"])
                assert "/uploads/*" in text or s["Condition"]["StringLike"]["s3:prefix"] == ["uploads/", "uploads/*"]
            if "secretsmanager:GetSecretValue" in json.dumps(s["Action"]):
                assert s["Resource"] != "*"
    s3_actions = {
        role: {
            a
            for s in policy_statements(default, role)
            for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
            if a.startswith("s3:")
        }
        for role in ("ApiRole", "WorkerRole", "WatchdogRole")
    }
    assert s3_actions == {
        "ApiRole": {"s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject", "s3:ListBucket"},
        "WorkerRole": {"s3:GetObject"},
        "WatchdogRole": {"s3:DeleteObject", "s3:ListBucket"},
    }


# --- optional features -----------------------------------------------------------------------------------


def test_cloudfront_and_route53_only_when_switched_on(default: Synth, full: Synth) -> None:
    for cfn_type in ("AWS::CloudFront::Distribution", "AWS::Route53::RecordSet"):
        assert not default.of_type(cfn_type)
    dist = full.one("AWS::CloudFront::Distribution")["Properties"]["DistributionConfig"]
    assert dist["Aliases"] == ["docproc.example.com"]
    assert dist["ViewerCertificate"]["MinimumProtocolVersion"] == "TLSv1.2_2021"
    assert dist["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"
    origin = dist["Origins"][0]
    assert origin["DomainName"] == "origin.docproc.example.com"
    assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    assert origin["OriginCustomHeaders"][0]["HeaderName"] == "X-Origin-Verify"
    records = {
        (r["Properties"]["Name"], r["Properties"]["Type"]) for r in full.of_type("AWS::Route53::RecordSet").values()
    }
    assert records == {
        ("docproc.example.com.", "A"),
        ("docproc.example.com.", "AAAA"),
        ("origin.docproc.example.com.", "A"),
    }


def test_outputs_for_operators(default: Synth, full: Synth) -> None:
    expected = {
        "ApiUrl", "LoadBalancerDns", "ImageUri", "UploadsBucket", "DocumentDbEndpoint", "DocumentDbSecretArn",
        "ValkeyEndpoint", "ValkeySecretArn", "AuroraEndpoint", "AuroraSecretArn", "ApiAsgName", "WorkerAsgName",
        "WatchdogAsgName", "QueueDepthMetric",
    }  # fmt: skip
    assert set(default.template["Outputs"]) == expected
    assert set(full.template["Outputs"]) == expected | {"CloudFrontDomain"}
    assert full.template["Outputs"]["ApiUrl"]["Value"] == "https://docproc.example.com"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"region": "mars-1"}, "not an AWS region"),
        ({"azs": ("us-east-1a",)}, "two or more distinct"),
        ({"azs": ("us-east-1a", "eu-west-1a")}, "not in region"),
        ({"nat_gateways": 3}, "natGateways"),
        ({"worker_min": 5, "worker_max": 2}, "worker"),
        ({"valkey_replicas": 0}, "Multi-AZ"),
        ({"domain_name": "x.example.com"}, "hostedZoneId"),
        ({"cloudfront": True, "certificate_arn": "arn:x"}, "originDomainName"),
    ],
)
def test_invalid_context_is_refused(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Config(**changes).validate()


def test_defaults_are_valid() -> None:
    Config().validate()
    assert Config().availability_zones == ["us-east-1a", "us-east-1b"]
