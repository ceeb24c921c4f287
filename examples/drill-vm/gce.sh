#!/usr/bin/env bash
# An ephemeral drill host on Google Compute Engine, for the restore drill's provision-command and teardown-command:
#   gce.sh create   creates a VM, waits until it is ready, prints its address as the last line of stdout
#   gce.sh delete   deletes the VM that `create` made in this job (and its boot disk), nothing else
# Needs gcloud, authenticated for the project (google-github-actions/auth in a workflow), ssh-keygen and
# ssh-keyscan, and common.sh beside this file. Everything but the address goes to stderr.
#
# Settings (environment):
#   DRILL_GCE_PROJECT, DRILL_GCE_ZONE      where the VM goes (required)
#   DRILL_GCE_MACHINE_TYPE                 default e2-standard-4 (4 vCPUs, 16 GB: room for Looker's JVM)
#   DRILL_GCE_IMAGE_FAMILY, _IMAGE_PROJECT default debian-12 from debian-cloud
#   DRILL_GCE_SUBNET                       a subnetwork for the VM (default: the project's default network)
#   DRILL_GCE_NETWORK_TAGS                 default looker-drill: the tag a firewall rule uses to let the runner reach
#                                          the VM's SSH port and Looker's web and API ports (9999, 19999)
#   DRILL_ADDRESS                          external (default) or internal, for a runner in the same network
#   DRILL_HOST_KEY, DRILL_AUTHORIZED_KEY   see common.sh (required for create)
#   DRILL_DISK_GB, DRILL_PACKAGES, DRILL_READY_TIMEOUT, DRILL_STATE_DIR: see common.sh
# The VM is labelled looker-backup=drill and looker-drill-run=<workflow run>. It gets no service account: the
# restored Looker has no credentials for the project, and creating it needs no permission to act as one.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"

PROVIDER=gce

gce() { gcloud --quiet --project "$DRILL_GCE_PROJECT" "$@"; }

create() {
  : "${DRILL_GCE_PROJECT:?set DRILL_GCE_PROJECT}" "${DRILL_GCE_ZONE:?set DRILL_GCE_ZONE}"
  require_keys
  state_refuse_existing "$PROVIDER"
  local name script address field
  name="$(drill_name)"
  # Recorded before the VM exists: a create that fails halfway still leaves `delete` what to remove.
  state_write "$PROVIDER" "name=$name" "project=$DRILL_GCE_PROJECT" "zone=$DRILL_GCE_ZONE"
  private_tmp
  script="$DRILL_TMP/startup-script"
  (umask 077 && first_boot_script_vm >"$script")
  local subnet=()
  if [ -n "${DRILL_GCE_SUBNET:-}" ]; then subnet=(--subnet "$DRILL_GCE_SUBNET"); fi
  log "creating $name in $DRILL_GCE_PROJECT/$DRILL_GCE_ZONE"
  gce compute instances create "$name" \
    --zone "$DRILL_GCE_ZONE" \
    --machine-type "${DRILL_GCE_MACHINE_TYPE:-e2-standard-4}" \
    --image-family "${DRILL_GCE_IMAGE_FAMILY:-debian-12}" \
    --image-project "${DRILL_GCE_IMAGE_PROJECT:-debian-cloud}" \
    --boot-disk-size "${DRILL_DISK_GB}GB" \
    --labels "${DRILL_LABEL_KEY}=${DRILL_LABEL_VALUE},looker-drill-run=$(printf '%s' "$DRILL_RUN" | tr '[:upper:]' '[:lower:]')" \
    --tags "${DRILL_GCE_NETWORK_TAGS:-looker-drill}" \
    --metadata-from-file "startup-script=$script" \
    --no-service-account --no-scopes \
    "${subnet[@]}" >&2
  if [ "$DRILL_ADDRESS" = internal ]; then
    field='networkInterfaces[0].networkIP'
  else
    field='networkInterfaces[0].accessConfigs[0].natIP'
  fi
  address="$(gce compute instances describe "$name" --zone "$DRILL_GCE_ZONE" --format "value($field)")"
  [ -n "$address" ] || die "$name has no $DRILL_ADDRESS address"
  wait_for_host_key "$address"
  printf '%s\n' "$address"
}

delete() {
  local name project zone label
  if ! name="$(state_get "$PROVIDER" name)" || [ -z "$name" ]; then
    log "no drill VM recorded in $(state_file "$PROVIDER"): nothing to delete"
    return 0
  fi
  project="$(state_get "$PROVIDER" project)"
  zone="$(state_get "$PROVIDER" zone)"
  DRILL_GCE_PROJECT="$project"
  private_tmp
  if ! label="$(gce compute instances describe "$name" --zone "$zone" \
    --format "value(labels.${DRILL_LABEL_KEY})" 2>"$DRILL_TMP/error")"; then
    # Gone (never created, or deleted by hand) is done; any other failure keeps the record for the next try.
    grep -q 'was not found' "$DRILL_TMP/error" || die "cannot look up $name: $(cat "$DRILL_TMP/error")"
    log "$name does not exist (any more) in $project/$zone"
    state_clear "$PROVIDER"
    return 0
  fi
  [ "$label" = "$DRILL_LABEL_VALUE" ] || die "$name is not labelled ${DRILL_LABEL_KEY}=${DRILL_LABEL_VALUE}: not deleting it"
  log "deleting $name in $project/$zone"
  gce compute instances delete "$name" --zone "$zone" --delete-disks all >&2
  state_clear "$PROVIDER"
}

case "${1:-}" in
  create) create ;;
  delete) delete ;;
  *) die "usage: $0 create|delete" ;;
esac
