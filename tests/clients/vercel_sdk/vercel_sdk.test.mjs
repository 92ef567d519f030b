// The simulator's Vercel API, driven by the official @vercel/sdk (pinned in package.json).
//
// Every call must come back without the SDK throwing (ResponseValidationError,
// SDKValidationError), and its raw answer must satisfy the SDK's own schema for that operation
// without a lax fallback (see strict.mjs). SIM_URL is the simulator's base URL; the test owns the
// simulator's state and resets it first. Run by tests/clients/test_official_clients.py.

import assert from "node:assert/strict";
import { before, test } from "node:test";

// The SDK's standalone functions with VercelCore: the `Vercel` class's methods are these same
// functions passed through `unwrapAsync`, but importing the class loads every model of the whole
// API (about 3 s) where this loads the few the test uses.
import { VercelCore } from "@vercel/sdk/core.js";
import { aliasesGetAlias } from "@vercel/sdk/funcs/aliasesGetAlias.js";
import { aliasesListAliases } from "@vercel/sdk/funcs/aliasesListAliases.js";
import { aliasesListDeploymentAliases } from "@vercel/sdk/funcs/aliasesListDeploymentAliases.js";
import { deploymentsGetDeployment } from "@vercel/sdk/funcs/deploymentsGetDeployment.js";
import { deploymentsGetDeployments } from "@vercel/sdk/funcs/deploymentsGetDeployments.js";
import { projectsGetProject } from "@vercel/sdk/funcs/projectsGetProject.js";
import { projectsRequestPromote } from "@vercel/sdk/funcs/projectsRequestPromote.js";
import { projectsRequestRollback } from "@vercel/sdk/funcs/projectsRequestRollback.js";
import { rollingReleaseApproveRollingReleaseStage } from "@vercel/sdk/funcs/rollingReleaseApproveRollingReleaseStage.js";
import { rollingReleaseCompleteRollingRelease } from "@vercel/sdk/funcs/rollingReleaseCompleteRollingRelease.js";
import { rollingReleaseGetRollingRelease } from "@vercel/sdk/funcs/rollingReleaseGetRollingRelease.js";
import { rollingReleaseStartRollingRelease } from "@vercel/sdk/funcs/rollingReleaseStartRollingRelease.js";
import { HTTPClient } from "@vercel/sdk/lib/http.js";
import { ApproveRollingReleaseStageResponseBody$inboundSchema } from "@vercel/sdk/models/approverollingreleasestageop.js";
import { CompleteRollingReleaseResponseBody$inboundSchema } from "@vercel/sdk/models/completerollingreleaseop.js";
import { GetAliasResponseBody$inboundSchema } from "@vercel/sdk/models/getaliasop.js";
import { GetDeploymentResponseBody2$inboundSchema as OwnerDeployment } from "@vercel/sdk/models/getdeploymentresponsebody1.js";
import { GetDeploymentsResponseBody$inboundSchema } from "@vercel/sdk/models/getdeploymentsop.js";
import { GetProjectResponseBody$inboundSchema } from "@vercel/sdk/models/getprojectresponsebody.js";
import { GetRollingReleaseResponseBody$inboundSchema } from "@vercel/sdk/models/getrollingreleaseop.js";
import { ListAliasesResponseBody$inboundSchema } from "@vercel/sdk/models/listaliasesop.js";
import { ListDeploymentAliasesResponseBody$inboundSchema } from "@vercel/sdk/models/listdeploymentaliasesop.js";
import { StartRollingReleaseResponseBody$inboundSchema } from "@vercel/sdk/models/startrollingreleaseop.js";
import { unwrapAsync } from "@vercel/sdk/types/fp.js";

import { laxPaths } from "./strict.mjs";

const SIM = process.env.SIM_URL;
const TEAM = "team_Ab12Cd34Ef56Gh78Ij90Kl12";
const PROJECT = "prj_Lm3Np5Qr7St9Uv1Wx3Yz5Ab7";
const scope = { teamId: TEAM };

let last = null; // the raw answer to the latest SDK request
const httpClient = new HTTPClient();
httpClient.addHook("response", async (res, req) => {
  last = { url: req.url, status: res.status, text: await res.clone().text() };
});
const core = new VercelCore({
  bearerToken: process.env.VERCEL_TOKEN ?? "vercel-token",
  serverURL: `${SIM}/vercel`,
  httpClient,
  retryConfig: { strategy: "none" },
});
const method = (func) => (request) => unwrapAsync(func(core, request));
const vercel = {
  aliases: {
    getAlias: method(aliasesGetAlias),
    listAliases: method(aliasesListAliases),
    listDeploymentAliases: method(aliasesListDeploymentAliases),
  },
  deployments: {
    getDeployment: method(deploymentsGetDeployment),
    getDeployments: method(deploymentsGetDeployments),
  },
  projects: {
    getProject: method(projectsGetProject),
    requestPromote: method(projectsRequestPromote),
    requestRollback: method(projectsRequestRollback),
  },
  rollingRelease: {
    approveRollingReleaseStage: method(rollingReleaseApproveRollingReleaseStage),
    completeRollingRelease: method(rollingReleaseCompleteRollingRelease),
    getRollingRelease: method(rollingReleaseGetRollingRelease),
    startRollingRelease: method(rollingReleaseStartRollingRelease),
  },
};

/** Run one SDK call; fail unless its raw answer matches `schema` without lax fallbacks. */
async function strictly(schema, call) {
  last = null;
  let result;
  let thrown = null;
  try {
    result = await call();
  } catch (error) {
    thrown = error; // ResponseValidationError says only that validation failed; laxPaths says where
  }
  assert.ok(last, `the SDK made no request: ${thrown}`);
  if (thrown && !(last.status >= 200 && last.status < 300)) throw thrown;
  const problems = laxPaths(schema, JSON.parse(last.text));
  assert.deepEqual(problems, [], `${last.url} (${last.status}) answered outside the SDK's schema`);
  if (thrown) throw thrown;
  return result;
}

async function control(method, path, body) {
  const res = await fetch(`${SIM}/_sim${path}`, {
    method,
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  assert.ok(res.ok, `${method} /_sim${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function deployment(fields = {}) {
  const { deployment } = await control("POST", "/vercel/deployments", { project_id: PROJECT, ...fields });
  return deployment;
}

let live;
let staged;

before(async () => {
  assert.ok(SIM, "SIM_URL names the simulator");
  await control("POST", "/reset");
  await control("POST", "/config", { alias_delay: 0, gatekeeper_url: null });
  await control("POST", "/vercel/projects", {
    id: PROJECT,
    name: "shop-web",
    team_id: TEAM,
    team_slug: "acme",
    domains: ["shop.acme.com", "www.acme.com"],
  });
  live = await deployment({ live: true });
  staged = await deployment();
});

test("getDeployment answers the owner's view, by id and by url", async () => {
  const preview = await deployment({ target: "preview" });
  const failed = await deployment({ state: "ERROR" });
  const building = await deployment({ state: "BUILDING" });
  for (const d of [live, staged, preview, failed, building]) {
    const got = await strictly(OwnerDeployment, () => vercel.deployments.getDeployment({ idOrUrl: d.id, ...scope }));
    assert.equal(got.id, d.id);
    assert.equal(got.readyState, d.readyState);
  }
  const byUrl = await strictly(OwnerDeployment, () =>
    vercel.deployments.getDeployment({ idOrUrl: staged.url, ...scope }),
  );
  assert.equal(byUrl.id, staged.id);
});

test("getDeployments lists the project's deployments", async () => {
  const page = await strictly(GetDeploymentsResponseBody$inboundSchema, () =>
    vercel.deployments.getDeployments({ projectId: PROJECT, limit: 2, ...scope }),
  );
  assert.equal(page.deployments.length, 2);
  assert.ok(page.pagination.next, "a second page exists");
  const production = await strictly(GetDeploymentsResponseBody$inboundSchema, () =>
    vercel.deployments.getDeployments({ projectId: PROJECT, target: "production", state: "READY", ...scope }),
  );
  assert.deepEqual(
    production.deployments.map((d) => d.uid).sort(),
    [live.id, staged.id].sort(),
  );
});

test("getProject, requestPromote and requestRollback", async () => {
  const before = await strictly(GetProjectResponseBody$inboundSchema, () =>
    vercel.projects.getProject({ idOrName: "shop-web", ...scope }),
  );
  assert.equal(before.id, PROJECT);
  assert.equal(before.targets?.production?.id, live.id);

  await vercel.projects.requestPromote({ projectId: PROJECT, deploymentId: staged.id, ...scope });
  const promoted = await strictly(GetProjectResponseBody$inboundSchema, () =>
    vercel.projects.getProject({ idOrName: PROJECT, ...scope }),
  );
  assert.equal(promoted.lastAliasRequest?.type, "promote");
  assert.equal(promoted.lastAliasRequest?.jobStatus, "succeeded");
  assert.equal(promoted.targets?.production?.id, staged.id);

  await vercel.projects.requestRollback({ projectId: PROJECT, deploymentId: live.id, description: "sdk", ...scope });
  const rolledBack = await strictly(GetProjectResponseBody$inboundSchema, () =>
    vercel.projects.getProject({ idOrName: PROJECT, ...scope }),
  );
  assert.ok(rolledBack.lastRollbackTarget, "the SDK keeps lastRollbackTarget as an opaque object");
  assert.equal(rolledBack.lastAliasRequest?.type, "rollback");
  assert.equal(rolledBack.targets?.production?.id, live.id);
});

test("listAliases, getAlias and listDeploymentAliases", async () => {
  const all = await strictly(ListAliasesResponseBody$inboundSchema, () =>
    vercel.aliases.listAliases({ projectId: PROJECT, ...scope }),
  );
  assert.deepEqual(all.aliases.map((a) => a.alias).sort(), ["shop.acme.com", "www.acme.com"]);
  const one = await strictly(GetAliasResponseBody$inboundSchema, () =>
    vercel.aliases.getAlias({ idOrAlias: "shop.acme.com", ...scope }),
  );
  assert.equal(one.alias, "shop.acme.com");
  const production = await vercel.projects.getProject({ idOrName: PROJECT, ...scope });
  const ofDeployment = await strictly(ListDeploymentAliasesResponseBody$inboundSchema, () =>
    vercel.aliases.listDeploymentAliases({ id: production.targets.production.id, ...scope }),
  );
  assert.equal(ofDeployment.aliases.length, 2);
});

test("a rolling release from start to complete", async () => {
  await control("PATCH", `/vercel/projects/${PROJECT}`, { rolling_release: { stages: [10, 50, 90] } });
  const none = await strictly(GetRollingReleaseResponseBody$inboundSchema, () =>
    vercel.rollingRelease.getRollingRelease({ idOrName: PROJECT, state: "ACTIVE", ...scope }),
  );
  assert.equal(none.rollingRelease, null);

  const canary = await deployment();
  const body = { canaryDeploymentId: canary.id };
  const started = await strictly(StartRollingReleaseResponseBody$inboundSchema, () =>
    vercel.rollingRelease.startRollingRelease({ idOrName: PROJECT, requestBody: body, ...scope }),
  );
  assert.equal(started.rollingRelease?.state, "ACTIVE");
  const active = await strictly(GetRollingReleaseResponseBody$inboundSchema, () =>
    vercel.rollingRelease.getRollingRelease({ idOrName: PROJECT, ...scope }),
  );
  assert.equal(active.rollingRelease?.activeStage?.targetPercentage, 10);

  const approved = await strictly(ApproveRollingReleaseStageResponseBody$inboundSchema, () =>
    vercel.rollingRelease.approveRollingReleaseStage({
      idOrName: PROJECT,
      requestBody: { ...body, nextStageIndex: 1, activeStageIndex: 0 },
      ...scope,
    }),
  );
  assert.equal(approved.rollingRelease?.activeStage?.targetPercentage, 50);

  const completed = await strictly(CompleteRollingReleaseResponseBody$inboundSchema, () =>
    vercel.rollingRelease.completeRollingRelease({ idOrName: PROJECT, requestBody: body, ...scope }),
  );
  assert.equal(completed.rollingRelease?.state, "COMPLETE");
  const project = await strictly(GetProjectResponseBody$inboundSchema, () =>
    vercel.projects.getProject({ idOrName: PROJECT, ...scope }),
  );
  assert.equal(project.targets?.production?.id, canary.id);
  assert.ok(project.lastAliasRequest?.fromRollingReleaseId);
});

test("an aborted rolling release still parses", async () => {
  const canary = await deployment();
  const body = { canaryDeploymentId: canary.id };
  await vercel.rollingRelease.startRollingRelease({ idOrName: PROJECT, requestBody: body, ...scope });
  const production = (await vercel.projects.getProject({ idOrName: PROJECT, ...scope })).targets.production.id;
  await vercel.projects.requestRollback({ projectId: PROJECT, deploymentId: production, ...scope });
  const aborted = await strictly(GetRollingReleaseResponseBody$inboundSchema, () =>
    vercel.rollingRelease.getRollingRelease({ idOrName: PROJECT, ...scope }),
  );
  assert.equal(aborted.rollingRelease?.state, "ABORTED");
  assert.equal(aborted.rollingRelease?.activeStage, null);
});
