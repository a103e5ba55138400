// Sends a known set of events to a woorelay server with the real Segment and RudderStack
// Node SDKs, waits until each SDK reports every event delivered (or failed), and prints a
// summary. Exit status 1 when an SDK reported a failure.
//
//   node send.js URL SEGMENT_WRITE_KEY RUDDERSTACK_WRITE_KEY
'use strict';

const { Analytics } = require('@segment/analytics-node');
const RudderAnalytics = require('@rudderstack/rudder-sdk-node');

const [url, segmentKey, rudderKey] = process.argv.slice(2);
if (!url || !segmentKey || !rudderKey) {
  console.error('usage: node send.js URL SEGMENT_WRITE_KEY RUDDERSTACK_WRITE_KEY');
  process.exit(2);
}

// calls returns the events both SDKs send, with the prefix in event and page names.
function calls(prefix, anon, user) {
  return [
    ['track', { anonymousId: anon, event: `${prefix} Order Completed`, properties: { revenue: 12.5, order_id: `${prefix}-o1` } }],
    ['identify', { userId: user, traits: { email: `${prefix}@Example.com`, name: `${prefix} User` } }],
    ['page', { anonymousId: anon, name: `${prefix} Pricing`, properties: { url: 'https://example.com/pricing' } }],
    ['screen', { userId: user, name: `${prefix} Home` }],
    ['group', { userId: user, groupId: `${prefix}-g1` }],
    ['alias', { userId: user, previousId: anon }],
    ['track', { userId: user, anonymousId: anon, event: 'Account Created', properties: { plan: `${prefix}-pro` } }],
  ];
}

// send makes every call with a callback and resolves to [sent, failed] once all are called.
function send(client, list) {
  let failed = 0;
  const done = list.map(([method, msg]) => new Promise((resolve) => {
    client[method](msg, (err) => {
      if (err) {
        failed++;
        console.error(`${method} failed:`, err && (err.message || err));
      }
      resolve();
    });
  }));
  return Promise.all(done).then(() => [list.length, failed]);
}

async function segment() {
  const client = new Analytics({ writeKey: segmentKey, host: url, flushAt: 3, maxRetries: 0 });
  client.on('error', (err) => console.error('segment error:', err && (err.reason || err.message || err)));
  const result = send(client, calls('Segment', 'seg-anon-1', 'seg-user-1'));
  await client.closeAndFlush({ timeout: 20000 });
  return result;
}

async function rudderstack() {
  const client = new RudderAnalytics(rudderKey, {
    dataPlaneUrl: url,
    flushAt: 3,
    flushInterval: 100,
    retryCount: 0,
    logLevel: 'error',
    errorHandler: (err) => console.error('rudderstack error:', err && (err.message || err)),
  });
  const result = send(client, calls('Rudder', 'rs-anon-1', 'rs-user-1'));
  await client.flush();
  return result;
}

(async () => {
  const guard = setTimeout(() => {
    console.error('timed out waiting for the SDKs to deliver');
    process.exit(1);
  }, 30000);
  const [seg, rs] = await Promise.all([segment(), rudderstack()]);
  clearTimeout(guard);
  const summary = { segment: { sent: seg[0], failed: seg[1] }, rudderstack: { sent: rs[0], failed: rs[1] } };
  console.log(JSON.stringify(summary));
  process.exit(seg[1] + rs[1] > 0 ? 1 : 0);
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
