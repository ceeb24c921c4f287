#!/usr/bin/env bash
# An ephemeral drill host on AWS EC2, for the restore drill's provision-command and teardown-command:
#   aws-ec2.sh create   launches an instance, waits until it is ready, prints its address as the last line of stdout
#   aws-ec2.sh delete   terminates the instance that `create` launched in this job (its volumes go with it)
# Needs the aws CLI with credentials for the region (aws-actions/configure-aws-credentials in a workflow),
# ssh-keygen and ssh-keyscan, and common.sh beside this file. Everything but the address goes to stderr.
#
# Settings (environment):
#   AWS_REGION                             the region (required; the aws CLI reads it too)
#   DRILL_AWS_IMAGE                        a Debian 12 or Ubuntu 22.04 AMI id of that region, or
#                                          resolve:ssm:<public parameter> (required: AMI ids differ per region)
#   DRILL_AWS_SUBNET                       the subnet (required)
#   DRILL_AWS_SECURITY_GROUP               a security group that lets the runner reach SSH and Looker's web and API
#                                          ports (9999, 19999) (required)
#   DRILL_AWS_INSTANCE_TYPE                default m6i.xlarge (4 vCPUs, 16 GiB: room for Looker's JVM)
#   DRILL_AWS_ROOT_DEVICE                  the image's root device, default /dev/xvda (Debian; Ubuntu: /dev/sda1)
#   DRILL_ADDRESS                          external (the public address, default) or internal
#   DRILL_HOST_KEY, DRILL_AUTHORIZED_KEY   see common.sh (required for create)
#   DRILL_DISK_GB, DRILL_PACKAGES, DRILL_READY_TIMEOUT, DRILL_STATE_DIR: see common.sh
# The instance and its volume are tagged looker-backup=drill, looker-drill-run=<workflow run> and Name.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"

PROVIDER=aws-ec2

create() {
  : "${AWS_REGION:?set AWS_REGION}" "${DRILL_AWS_IMAGE:?set DRILL_AWS_IMAGE}"
  : "${DRILL_AWS_SUBNET:?set DRILL_AWS_SUBNET}" "${DRILL_AWS_SECURITY_GROUP:?set DRILL_AWS_SECURITY_GROUP}"
  require_keys
  state_refuse_existing "$PROVIDER"
  local name user_data id field address tags public=()
  name="$(drill_name)"
  private_tmp
  user_data="$DRILL_TMP/user-data"
  (umask 077 && first_boot_script_vm >"$user_data")
  if [ "$DRILL_ADDRESS" = external ]; then public=(--associate-public-ip-address); fi
  tags="{Key=${DRILL_LABEL_KEY},Value=${DRILL_LABEL_VALUE}},{Key=looker-drill-run,Value=${DRILL_RUN}},{Key=Name,Value=${name}}"
  log "launching $name in $AWS_REGION"
  id="$(aws ec2 run-instances \
    --region "$AWS_REGION" \
    --image-id "$DRILL_AWS_IMAGE" \
    --instance-type "${DRILL_AWS_INSTANCE_TYPE:-m6i.xlarge}" \
    --subnet-id "$DRILL_AWS_SUBNET" \
    --security-group-ids "$DRILL_AWS_SECURITY_GROUP" \
    "${public[@]}" \
    --instance-initiated-shutdown-behavior terminate \
    --block-device-mappings "DeviceName=${DRILL_AWS_ROOT_DEVICE:-/dev/xvda},Ebs={VolumeSize=${DRILL_DISK_GB},DeleteOnTermination=true}" \
    --tag-specifications "ResourceType=instance,Tags=[$tags]" "ResourceType=volume,Tags=[$tags]" \
    --user-data "file://$user_data" \
    --query 'Instances[0].InstanceId' --output text)"
  if [ -z "$id" ] || [ "$id" = None ]; then die "run-instances returned no instance id"; fi
  state_write "$PROVIDER" "id=$id" "region=$AWS_REGION"
  log "waiting for $id to run"
  aws ec2 wait instance-running --region "$AWS_REGION" --instance-ids "$id"
  if [ "$DRILL_ADDRESS" = internal ]; then field=PrivateIpAddress; else field=PublicIpAddress; fi
  address="$(aws ec2 describe-instances --region "$AWS_REGION" --instance-ids "$id" \
    --query "Reservations[0].Instances[0].$field" --output text)"
  if [ -z "$address" ] || [ "$address" = None ]; then die "$id has no $DRILL_ADDRESS address"; fi
  wait_for_host_key "$address"
  printf '%s\n' "$address"
}

delete() {
  local id region label
  if ! id="$(state_get "$PROVIDER" id)" || [ -z "$id" ]; then
    log "no drill instance recorded in $(state_file "$PROVIDER"): nothing to delete"
    return 0
  fi
  region="$(state_get "$PROVIDER" region)"
  private_tmp
  if ! label="$(aws ec2 describe-instances --region "$region" --instance-ids "$id" \
    --query "Reservations[0].Instances[0].Tags[?Key=='${DRILL_LABEL_KEY}'].Value | [0]" --output text \
    2>"$DRILL_TMP/error")"; then
    # Gone (terminated long ago) is done; any other failure keeps the record for the next try.
    grep -q 'InvalidInstanceID.NotFound' "$DRILL_TMP/error" || die "cannot look up $id: $(cat "$DRILL_TMP/error")"
    log "$id does not exist (any more) in $region"
    state_clear "$PROVIDER"
    return 0
  fi
  [ "$label" = "$DRILL_LABEL_VALUE" ] || die "$id is not tagged ${DRILL_LABEL_KEY}=${DRILL_LABEL_VALUE}: not terminating it"
  log "terminating $id in $region"
  aws ec2 terminate-instances --region "$region" --instance-ids "$id" >&2
  aws ec2 wait instance-terminated --region "$region" --instance-ids "$id"
  state_clear "$PROVIDER"
}

case "${1:-}" in
  create) create ;;
  delete) delete ;;
  *) die "usage: $0 create|delete" ;;
esac
