"""How the fleets scale: the API on CPU, the workers on the queue's depth, with a graceful scale-in."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from constructs import Construct

from docproc_infra import logical_ids
from docproc_infra.fleet import INSTANCE_WARMUP, Fleet
from docproc_infra.nag import Acknowledgments, flat
from docproc_infra.service import DRAIN_HOOK_NAME, METRIC_NAMESPACE, QUEUE_DEPTH_METRIC, QUEUE_NAME

API_CPU_TARGET_PERCENT = 60

# worker scaling on QueueDepth (jobs waiting, the maximum over a minute)
SCALE_OUT_STEPS = ((10, 1), (50, 2), (200, 4))  # (at least this many waiting, add this many instances)
SCALE_OUT_MINUTES = 2  # consecutive minutes above the first step before adding
SCALE_IN_MINUTES = 15  # consecutive minutes with an empty queue before removing one instance


class Scaling(logical_ids.Part):
    """The API tracks 60 % CPU. The workers step out fast on a backlog and in slowly once it is empty.

    Workers scale in gracefully. A termination lifecycle hook holds each instance until drain.sh has
    stopped the worker with SIGTERM (RQ's warm shutdown finishes the job in hand) and completed the
    hook. Heartbeats keep the instance alive for up to workerDrainSeconds.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, api: Fleet, workers: Fleet, nag: Acknowledgments
    ) -> None:
        super().__init__(scope, construct_id)
        api.group.scale_on_cpu_utilization("CpuTarget", target_utilization_percent=API_CPU_TARGET_PERCENT)

        depth = cloudwatch.Metric(
            namespace=METRIC_NAMESPACE,
            metric_name=QUEUE_DEPTH_METRIC,
            dimensions_map={"Queue": QUEUE_NAME},
            statistic="Maximum",
            period=Duration.minutes(1),
        )
        first = SCALE_OUT_STEPS[0][0]
        workers.group.scale_on_metric(
            "ScaleOutOnBacklog",
            metric=depth,
            scaling_steps=[autoscaling.ScalingInterval(upper=first, change=0)]
            + [autoscaling.ScalingInterval(lower=lower, change=add) for lower, add in SCALE_OUT_STEPS],
            adjustment_type=autoscaling.AdjustmentType.CHANGE_IN_CAPACITY,
            evaluation_periods=SCALE_OUT_MINUTES,
            datapoints_to_alarm=SCALE_OUT_MINUTES,
            estimated_instance_warmup=INSTANCE_WARMUP,
            metric_aggregation_type=autoscaling.MetricAggregationType.MAXIMUM,
        )
        workers.group.scale_on_metric(
            "ScaleInWhenEmpty",
            metric=depth,
            scaling_steps=[
                autoscaling.ScalingInterval(upper=0, change=-1),  # the alarm: QueueDepth <= 0
                autoscaling.ScalingInterval(lower=0, change=0),
            ],
            adjustment_type=autoscaling.AdjustmentType.CHANGE_IN_CAPACITY,
            evaluation_periods=SCALE_IN_MINUTES,
            datapoints_to_alarm=SCALE_IN_MINUTES,
            metric_aggregation_type=autoscaling.MetricAggregationType.MAXIMUM,
        )
        workers.group.add_lifecycle_hook(
            "Drain",
            lifecycle_hook_name=DRAIN_HOOK_NAME,
            lifecycle_transition=autoscaling.LifecycleTransition.INSTANCE_TERMINATING,
            default_result=autoscaling.DefaultResult.CONTINUE,
            heartbeat_timeout=Duration.minutes(15),
        )
        # its own policy, not the role's default one: the launch template depends on that one, and this
        # names the group, which depends on the launch template
        drain_policy = iam.Policy(
            self,
            "WorkerDrainPolicy",
            roles=[workers.role],
            statements=[
                iam.PolicyStatement(
                    sid="CompleteOwnDrain",
                    actions=["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"],
                    resources=[workers.group.auto_scaling_group_arn],
                )
            ],
        )
        nag.ack(
            drain_policy,
            f"AwsSolutions-IAM5[Resource::{flat(self, workers.group.auto_scaling_group_arn)}]",
            "The group's ARN embeds a UUID known only once it exists; the name pins the grant to the workers' "
            "own group, for its own lifecycle hook.",
        )
