// What an admin can do to an endpoint, from the live page's table or the endpoint's page.
import { api, confirmAction, reportError, toast } from "./common.js";
import { openEndpointForm, showSecret } from "./endpoint-form.js";

// Runs `action` on `endpoint`; returns the endpoint as it is afterwards (null once deleted).
export async function endpointAction(action, endpoint, button) {
  const path = `/endpoints/${encodeURIComponent(endpoint.id)}`;
  const label = endpoint.url || endpoint.id;
  if (button) button.disabled = true;
  try {
    if (action === "edit") {
      openEndpointForm(endpoint);
      return endpoint;
    }
    if (action === "disable") {
      if (!(await confirmAction(`Disable ${label}? Its deliveries wait (nothing is lost) and are sent when it is enabled again.`, "Disable"))) return endpoint;
      const after = await api("POST", `${path}/disable`);
      toast(after.enabled ? "The endpoint is still enabled" : "Endpoint disabled");
      return after;
    }
    if (action === "enable") {
      const after = await api("POST", `${path}/enable`);
      if (after.enabled) toast("Endpoint enabled: Relay disables it again if it keeps answering 410 Gone or failing");
      else toast(`The endpoint is still disabled: ${after.disabled_reason || "no reason given"}`, "error");
      return after;
    }
    if (action === "test") {
      await api("POST", `${path}/test`);
      toast("Test event sent: watch the feed");
      return endpoint;
    }
    if (action === "rotate") {
      if (!(await confirmAction(`Rotate the signing secret of ${label}? The old secret keeps signing for 24 hours.`, "Rotate"))) return endpoint;
      const answer = await api("POST", `${path}/rotate-secret`);
      showSecret(answer.secret, "The new signing secret. Deliveries carry signatures with the old and the new secret for 24 hours.");
      return answer;
    }
    if (action === "delete") {
      if (!(await confirmAction(`Delete ${label}? Its pending deliveries are cancelled; its history stays.`, "Delete"))) return endpoint;
      await api("DELETE", path);
      toast("Endpoint deleted");
      return null;
    }
  } catch (error) {
    reportError(error, `Could not ${action === "test" ? "send a test event" : action}`);
  } finally {
    if (button) button.disabled = false;
  }
  return endpoint;
}
