/** The deployment template, checked against the code it deploys. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse, type Tags } from 'yaml';
import { ENV_SOURCE, ENV_VARS } from '../../control-plane/config.ts';
import { DYNAMODB_ITEM_ACTIONS, TABLE_DEFINITION, TTL_ATTRIBUTE } from '../../control-plane/store/dynamodb.ts';
import { SWEEP_EVENT } from '../../control-plane/sweep.ts';

/** CloudFormation's short-form intrinsics, read as their long forms. */
const intrinsics: Tags = [
  'Ref',
  'Sub',
  'GetAtt',
  'Join',
  'If',
  'Equals',
  'Not',
  'Select',
  'Split',
  'ImportValue',
  'FindInMap',
  'Base64',
  'GetAZs',
  'Condition',
].flatMap(
  (name) =>
    (['scalar', 'seq', 'map'] as const).map((collection) => ({
      tag: `!${name}`,
      collection: collection === 'scalar' ? undefined : collection,
      resolve: (value: unknown) => {
        const v = (value as { toJSON?: () => unknown }).toJSON?.() ?? value;
        if (name === 'Ref') return { Ref: v };
        if (name === 'GetAtt') return { 'Fn::GetAtt': typeof v === 'string' ? v.split('.') : v };
        if (name === 'Condition') return { Condition: v };
        return { [`Fn::${name}`]: v };
      },
    })) as Tags,
);

const template = parse(readFileSync(new URL('../../infra/cloudformation.yaml', import.meta.url), 'utf8'), { customTags: intrinsics }) as {
  Parameters: Record<string, { Type: string; Default?: unknown; NoEcho?: boolean }>;
  Resources: Record<string, { Type: string; Properties: any; DeletionPolicy?: string }>;
  Outputs: Record<string, { Value: unknown }>;
};
/** The properties of the one resource of a type (the functions, two, are read by name). */
const resource = (type: string) => {
  const found = Object.entries(template.Resources).filter(([, r]) => r.Type === type);
  assert.equal(found.length, 1, `exactly one ${type}`);
  return found[0]![1].Properties;
};

describe('CloudFormation template', () => {
  it('declares the table the store adapter uses: keys, index, on-demand, PITR, deletion protection, encryption', () => {
    const t = resource('AWS::DynamoDB::Table');
    assert.equal(t.BillingMode, TABLE_DEFINITION.BillingMode);
    assert.deepEqual(t.AttributeDefinitions, TABLE_DEFINITION.AttributeDefinitions);
    assert.deepEqual(t.KeySchema, TABLE_DEFINITION.KeySchema);
    assert.deepEqual(t.GlobalSecondaryIndexes, TABLE_DEFINITION.GlobalSecondaryIndexes);
    assert.equal(t.PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled, true);
    assert.equal(t.DeletionProtectionEnabled, true);
    assert.equal(t.SSESpecification.SSEEnabled, true);
    assert.equal(template.Resources.Table!.DeletionPolicy, 'Retain');
  });

  it('runs both functions on a supported Node.js runtime, arm64, each with its own reserved concurrency, and a log group with retention', () => {
    for (const [name, concurrency] of [
      ['Function', 'ReservedConcurrency'],
      ['AgentFunction', 'AgentConcurrency'],
    ] as const) {
      const f = template.Resources[name]!.Properties;
      assert.match(f.Runtime, /^nodejs(22|24)\.x$/);
      assert.deepEqual(f.Architectures, ['arm64']);
      assert.equal(f.Handler, 'index.handler');
      assert.deepEqual(f.ReservedConcurrentExecutions, { Ref: concurrency });
      assert.equal(template.Parameters[concurrency]?.Type, 'Number');
      assert.deepEqual(f.LoggingConfig.LogGroup, { Ref: 'LogGroup' });
    }
    assert.deepEqual(resource('AWS::Logs::LogGroup').RetentionInDays, { Ref: 'LogRetentionDays' });
  });

  it('an anonymous flood cannot spend what renewals need: agents have their own function; the public one sits behind a throttled API', () => {
    const env = (name: string) => template.Resources[name]!.Properties.Environment.Variables as Record<string, unknown>;
    assert.equal(env('AgentFunction').NFSHA_API_SURFACE, 'agent');
    assert.equal(env('Function').NFSHA_API_SURFACE, 'operator');
    // The only Function URL is the agents'; the public function is reached through API Gateway alone.
    const url = resource('AWS::Lambda::Url');
    assert.deepEqual(url.TargetFunctionArn, { 'Fn::GetAtt': ['AgentFunction', 'Arn'] });
    assert.deepEqual(resource('AWS::ApiGatewayV2::Integration').IntegrationUri, { 'Fn::GetAtt': ['Function', 'Arn'] });
    const stage = resource('AWS::ApiGatewayV2::Stage');
    assert.deepEqual(stage.DefaultRouteSettings, { ThrottlingRateLimit: { Ref: 'PublicRateLimit' }, ThrottlingBurstLimit: { Ref: 'PublicBurstLimit' } });
    const permissions = Object.values(template.Resources).filter((r) => r.Type === 'AWS::Lambda::Permission');
    const publicInvokers = permissions.filter((p) => p.Properties.Principal === '*').map((p) => p.Properties.FunctionName);
    assert.deepEqual(publicInvokers, [{ Ref: 'AgentFunction' }], 'nobody but API Gateway invokes the public function');
    // The installer hands agents their own URL.
    assert.deepEqual(env('Function').NFSHA_AGENT_URL, { 'Fn::GetAtt': ['AgentFunctionUrl', 'FunctionUrl'] });
    assert.deepEqual(template.Outputs.AgentUrl?.Value, { 'Fn::GetAtt': ['AgentFunctionUrl', 'FunctionUrl'] });
  });

  it('lets DynamoDB expire events by their ttl attribute', () => {
    assert.deepEqual(resource('AWS::DynamoDB::Table').TimeToLiveSpecification, { AttributeName: TTL_ATTRIBUTE, Enabled: true });
  });

  it('sets every environment variable the code expects from the deployment', () => {
    assert.deepEqual(Object.keys(ENV_SOURCE).sort(), [...ENV_VARS].sort(), 'every variable the config reads is classified');
    for (const fn of ['Function', 'AgentFunction']) {
      const env = template.Resources[fn]!.Properties.Environment.Variables as Record<string, unknown>;
      // The agents' function needs no agent URL (it would name itself: a cycle in the template).
      const expected = ENV_VARS.filter((v) => ENV_SOURCE[v] === 'template' && !(fn === 'AgentFunction' && v === 'NFSHA_AGENT_URL'));
      for (const name of expected) assert.ok(name in env, `${name} is not set on ${fn}`);
      for (const name of ENV_VARS.filter((v) => ENV_SOURCE[v] !== 'template')) assert.ok(!(name in env), `${name} should not be set by the template`);
    }
  });

  it('grants exactly the item operations the adapter performs, on this table and its index only', () => {
    // The adapter's own calls: every SDK command the DynamoStore class sends.
    const source = readFileSync(new URL('../../control-plane/store/dynamodb.ts', import.meta.url), 'utf8');
    const storeClass = source.slice(source.indexOf('export class DynamoStore'), source.indexOf('export const TABLE_DEFINITION'));
    const used = [...new Set([...storeClass.matchAll(/new (\w+)Command\(/g)].map((m) => `dynamodb:${m[1]}`))].sort();
    assert.deepEqual(used, [...DYNAMODB_ITEM_ACTIONS].sort(), 'DYNAMODB_ITEM_ACTIONS lists what the adapter calls');

    type Statement = { Action: string[] | string; Resource: unknown };
    const statementsOf = (role: string) =>
      template.Resources[role]!.Properties.Policies.flatMap((p: { PolicyDocument: { Statement: Statement[] } }) => p.PolicyDocument.Statement) as Statement[];
    const dynamo = statementsOf('FunctionRole').filter((s) => [s.Action].flat().some((a) => a.startsWith('dynamodb:')));
    assert.equal(dynamo.length, 1);
    assert.deepEqual([dynamo[0]!.Action].flat().sort(), [...DYNAMODB_ITEM_ACTIONS].sort());
    assert.deepEqual(dynamo[0]!.Resource, [{ 'Fn::GetAtt': ['Table', 'Arn'] }, { 'Fn::Sub': '${Table.Arn}/index/gsi1' }]);
    const roles = Object.keys(template.Resources).filter((k) => template.Resources[k]!.Type === 'AWS::IAM::Role');
    assert.deepEqual(roles.sort(), ['FunctionRole', 'SchedulerRole']);
    for (const s of roles.flatMap(statementsOf)) {
      for (const a of [s.Action].flat()) assert.ok(!a.includes('*'), `wildcard action ${a}`);
      for (const r of [s.Resource].flat()) assert.notEqual(r, '*', 'wildcard resource');
    }
  });

  it('schedules the sweep with the event the handler recognises', () => {
    const s = resource('AWS::Scheduler::Schedule');
    assert.deepEqual(JSON.parse(s.Target.Input), SWEEP_EVENT);
    assert.deepEqual(s.Target.Arn, { 'Fn::GetAtt': ['Function', 'Arn'] });
    assert.deepEqual(s.ScheduleExpression, { Ref: 'SweepSchedule' });
    const invoke = template.Resources.SchedulerRole!.Properties.Policies[0].PolicyDocument.Statement[0];
    assert.deepEqual([invoke.Action, invoke.Resource], ['lambda:InvokeFunction', { 'Fn::GetAtt': ['Function', 'Arn'] }]);
  });

  it('lets each function invoke itself (webhook delivery after a response), and no other function', () => {
    const policy = template.Resources.FunctionRole!.Properties.Policies.find((p: { PolicyName: string }) => p.PolicyName === 'deliver-webhooks');
    const [statement, ...others] = policy.PolicyDocument.Statement;
    assert.equal(others.length, 0);
    assert.equal(statement.Action, 'lambda:InvokeFunction');
    const names = ['Function', 'AgentFunction'].map((f) => template.Resources[f]!.Properties.FunctionName['Fn::Sub'] as string);
    assert.deepEqual(
      statement.Resource.map((r: { 'Fn::Sub': string }) => r['Fn::Sub']),
      names.map((name) => `arn:\${AWS::Partition}:lambda:\${AWS::Region}:\${AWS::AccountId}:function:${name}`),
    );
  });

  it('carries no secret: no secret-looking parameter or literal', () => {
    const text = readFileSync(new URL('../../infra/cloudformation.yaml', import.meta.url), 'utf8');
    assert.doesNotMatch(text, /(password|secret|token|apikey|api_key)\s*:/i);
    for (const name of Object.keys(template.Parameters))
      assert.ok(!/secret|password|token|key$/i.test(name) || name === 'CodeKey', `parameter ${name} looks like a secret`);
  });
});
