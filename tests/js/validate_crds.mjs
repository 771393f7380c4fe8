// Validates custom resources against their CRDs' schemas, as compiled into
// the @kubernetes-models packages (tests/unit/test_k8s.py installs them).
// Input: a JSON array of resources on stdin. Output: a JSON array of
// {kind, name, error} (error null when valid). Exit 0 either way; 2 for a
// kind this script does not know.
import { readFileSync } from "node:fs";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { TriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const models = {
  "keda.sh/v1alpha1/ScaledObject": ScaledObject,
  "keda.sh/v1alpha1/TriggerAuthentication": TriggerAuthentication,
  "monitoring.coreos.com/v1/ServiceMonitor": ServiceMonitor,
};

const results = [];
for (const resource of JSON.parse(readFileSync(0, "utf8"))) {
  const Model = models[`${resource.apiVersion}/${resource.kind}`];
  if (Model === undefined) {
    console.error(`no schema for ${resource.apiVersion} ${resource.kind}`);
    process.exit(2);
  }
  let error = null;
  try {
    new Model(resource).validate();
  } catch (e) {
    error = String(e.message ?? e);
  }
  results.push({ kind: resource.kind, name: resource.metadata?.name, error });
}
console.log(JSON.stringify(results));
