#
# Recipe:: declare_amqp::email
#
# Example: provisions the email topology of the project's topology.example.yml
# (see the design document) through node attributes, the way a wrapper
# cookbook or a role would. A role can override any part of it, e.g.
# default_attributes('declare_amqp' => { 'topologies' => { 'email' => { 'vhost' => 'mail' } } }).
#
# Every email goes to the topic exchange `email`; a routing key without a
# queue of its own goes to the alternate exchange `email-undeliverable`, whose
# only queue is `email.default`. The consumer `email-sender` (priority_worker)
# reads `email.high` with prefetch 10 and `email.default` with prefetch 2.
#
node.default['declare_amqp']['topologies']['email'] = {
  'vhost' => '/',
  'prune' => false,
  'topology' => {
    'exchanges' => [
      { 'name' => 'email', 'type' => 'topic', 'alternate_exchange' => 'email-undeliverable' },
      { 'name' => 'email-undeliverable', 'type' => 'fanout' },
      # Where the worker's rejected and exhausted messages go (see email.dead).
      { 'name' => 'email.dlx', 'type' => 'fanout' },
    ],
    'queues' => [
      # User-triggered mail: password resets, sign-up confirmations.
      {
        'name' => 'email.high',
        'type' => 'classic',
        'dead_letter_exchange' => 'email.dlx',
        'bindings' => [{ 'exchange' => 'email', 'routing_key' => 'email.high' }],
      },
      # Everything else, including any routing key without a queue of its own.
      {
        'name' => 'email.default',
        'type' => 'classic',
        'max_priority' => 5,
        'dead_letter_exchange' => 'email.dlx',
        'bindings' => [
          { 'exchange' => 'email', 'routing_key' => 'email.default' },
          { 'exchange' => 'email-undeliverable' },
        ],
      },
      # Messages a worker rejected or gave up on, with the error in a header.
      { 'name' => 'email.dead', 'type' => 'quorum', 'bindings' => [{ 'exchange' => 'email.dlx' }] },
    ],
    'policies' => [
      # Limits operators may change later live in a policy, not in (immutable) queue arguments.
      {
        'name' => 'email-dead-limits',
        'pattern' => '^email\.dead$',
        'apply_to' => 'queues',
        'definition' => { 'max-length' => 100_000, 'overflow' => 'reject-publish' },
        'priority' => 1,
      },
    ],
    # The application that consumes these queues, in the same role: declare-amqp derives its
    # retry delay queues, and `priority-worker run ... --topology /etc/declare-amqp/email.yml
    # --consumer email-sender` takes its queues, prefetches and retries from here.
    'consumers' => [
      {
        'name' => 'email-sender',
        'queues' => [
          { 'queue' => 'email.high', 'prefetch' => 10 },
          { 'queue' => 'email.default', 'prefetch' => 2 },
        ],
        'mode' => 'weighted',
        'concurrency' => 4,
        'retry' => { 'max_retries' => 5, 'delays' => [1, 5, 30, 300] },
        'dead_letter_exchange' => 'email.dlx',
      },
    ],
    # Where messages must go: `declare-amqp validate` and `plan` check these (see the README).
    'expect' => [
      { 'exchange' => 'email', 'routing_key' => 'email.high', 'reaches' => ['email.high'] },
      { 'exchange' => 'email', 'routing_key' => 'newsletter.weekly', 'reaches' => ['email.default'] },
      { 'exchange' => 'email.dlx', 'routing_key' => 'email.high', 'reaches' => ['email.dead'] },
    ],
  },
}

include_recipe 'declare_amqp::topologies'
