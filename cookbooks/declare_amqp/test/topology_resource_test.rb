# frozen_string_literal: true

require_relative 'test_helper'

# declare_amqp_topology: the files it writes, the commands it runs with which
# environment, when it converges, and that credentials stay out of sight.
class TopologyResourceTest < Minitest::Test
  include CookbookTestHelpers

  PATH = '/etc/declare-amqp/email.yml'
  BIN = '/usr/local/bin/declare-amqp'
  ENV_EXPECTED = { 'AMQP_URL' => 'amqp://127.0.0.1:5672/', 'AMQP_USER' => 'alice',
                   'AMQP_PASS' => PASSWORD }.freeze
  # The file for the email topology of topology.example.yml, byte for byte.
  EMAIL_YAML = <<~'YAML'
    # Written by Chef (declare_amqp_topology[email]); local changes are overwritten.
    ---
    exchanges:
    - name: email
      type: topic
      alternate_exchange: email-undeliverable
    - name: email-undeliverable
      type: fanout
    - name: email.dlx
      type: fanout
    queues:
    - name: email.high
      type: classic
      dead_letter_exchange: email.dlx
      bindings:
      - exchange: email
        routing_key: email.high
    - name: email.default
      type: classic
      max_priority: 5
      dead_letter_exchange: email.dlx
      bindings:
      - exchange: email
        routing_key: email.default
      - exchange: email-undeliverable
    - name: email.dead
      type: quorum
      bindings:
      - exchange: email.dlx
    policies:
    - name: email-dead-limits
      pattern: "^email\\.dead$"
      apply_to: queues
      definition:
        max-length: 100000
        overflow: reject-publish
      priority: 1
    consumers:
    - name: email-sender
      queues:
      - queue: email.high
        prefetch: 10
      - queue: email.default
        prefetch: 2
      mode: weighted
      concurrency: 4
      retry:
        max_retries: 5
        delays:
        - 1
        - 5
        - 30
        - 300
      dead_letter_exchange: email.dlx
    expect:
    - exchange: email
      routing_key: email.high
      reaches:
      - email.high
    - exchange: email
      routing_key: newsletter.weekly
      reaches:
      - email.default
    - exchange: email.dlx
      routing_key: email.high
      reaches:
      - email.dead
  YAML
  PLAN_OUTPUT = "vhost /\n  + create exchange email (topic)\n  + create queue email.high\n" \
                "Plan: 2 to create, 0 to update, 0 to delete.\n"

  def test_matching_broker_writes_the_file_and_converges_nothing
    # Pins: plan exit 0 => only the file is managed; no apply, nothing converged.
    tool = FakeTool.new(plan: [0, "No changes.\n", ''])
    run = converge_email(new_run(tool: tool))

    directory, file = run.find(:directory), run.find(:file)
    assert_equal ['/etc/declare-amqp'], directory.map(&:name)
    assert_equal({ owner: 'root', group: 'root', mode: '0700' }, directory.first.props)
    assert_equal [PATH], file.map(&:name)
    assert_equal({ content: EMAIL_YAML, owner: 'root', group: 'root', mode: '0600', sensitive: true },
                 file.first.props)
    assert_equal [{ argv: [BIN, 'plan', PATH, '--detailed-exitcode'], env: ENV_EXPECTED,
                    timeout: 900, resource: 'declare_amqp_topology[email]' }], run.commands
    assert_empty run.converged
  end

  def test_rendered_file_is_the_topology_as_plain_yaml
    # Pins: the file is the Hash as portable YAML (no Ruby tags from the
    # attribute Mash), with a header comment and nothing else.
    run = converge_email(new_run, vhost: 'mail')
    content = run.find(:file, PATH).first.props[:content]

    refute_includes content, '!ruby'
    assert content.start_with?("# Written by Chef (declare_amqp_topology[email]); local changes are overwritten.\n---\n")
    expected = { 'vhost' => 'mail' }.merge(example_topology.reject { |key, _| key == 'vhost' })
    assert_equal expected, YAML.safe_load(content)
    assert_equal 'vhost', YAML.safe_load(content).keys.first
  end

  def test_pending_changes_apply_the_file_and_report_the_plan
    # Pins: plan exit 2 => converge_by with the plan's lines, then apply on the same file/env.
    tool = FakeTool.new(plan: [2, PLAN_OUTPUT, ''], apply: [0, "Applied 2 changes.\n", ''])
    run = converge_email(new_run(tool: tool))

    assert_equal [[BIN, 'plan', PATH, '--detailed-exitcode'], [BIN, 'apply', PATH]],
                 run.commands.map { |c| c[:argv] }
    assert_equal [ENV_EXPECTED, ENV_EXPECTED], run.commands.map { |c| c[:env] }
    assert_equal [{ resource: 'declare_amqp_topology[email]',
                    description: "apply #{PATH} to the broker:\n#{PLAN_OUTPUT.chomp}" }], run.converged
    assert_includes run.log, "INFO: declare_amqp_topology[email]: applied #{PATH}\nApplied 2 changes.\n"
  end

  def test_prune_is_passed_to_plan_and_apply
    tool = FakeTool.new(plan: [2, PLAN_OUTPUT, ''])
    run = converge_email(new_run(tool: tool), prune: true)

    assert_equal [[BIN, 'plan', PATH, '--detailed-exitcode', '--prune'], [BIN, 'apply', PATH, '--prune']],
                 run.commands.map { |c| c[:argv] }
  end

  def test_conflict_fails_the_run_with_the_tools_message
    # Pins: plan exit 1 => DeclareAmqp::Error carrying stderr and stdout; nothing applied.
    message = "topology.yml:14: queue email.high: type classic on the broker, quorum in the file\n"
    tool = FakeTool.new(plan: [1, "Plan: 1 conflict.\n", message])
    error = assert_raises(DeclareAmqp::Error) { converge_email(new_run(tool: tool)) }

    assert_equal "declare_amqp_topology[email]: declare-amqp plan failed (exit 1):\n" \
                 "#{message.strip}\nPlan: 1 conflict.", error.message
    assert_equal ['plan'], tool.calls.map { |c| c[:argv][1] }
  end

  def test_failed_apply_fails_the_run
    tool = FakeTool.new(plan: [2, PLAN_OUTPUT, ''], apply: [1, '', "connection refused\n"])
    error = assert_raises(DeclareAmqp::Error) { converge_email(new_run(tool: tool)) }

    assert_equal "declare_amqp_topology[email]: declare-amqp apply failed (exit 1):\nconnection refused",
                 error.message
  end

  def test_why_run_plans_a_private_copy_and_applies_nothing
    # Pins: in why-run the target file is not written, so the plan runs on a
    # 0600 temporary copy of the same YAML, which is removed afterwards.
    tool = FakeTool.new(plan: [2, PLAN_OUTPUT, ''])
    run = converge_email(new_run(tool: tool, whyrun: true))
    expected = run.find(:file, PATH).first.props[:content]

    assert_equal 1, tool.calls.size
    call = tool.calls.first
    assert_equal 'plan', call[:argv][1]
    refute_equal PATH, call[:argv][2]
    assert_equal [expected, 0o600], [call[:content], call[:mode]]
    refute File.exist?(call[:argv][2]), 'the temporary copy is removed'
    assert_includes run.log, "Would apply #{PATH} to the broker:\n#{PLAN_OUTPUT.chomp}"
  end

  def test_plan_action_only_reports
    # Pins: action :plan writes no file, runs only plan (on a temporary copy) and logs it.
    tool = FakeTool.new(plan: [2, PLAN_OUTPUT, ''])
    run = converge_email(new_run(tool: tool), action: :plan)

    assert_empty run.find(:file)
    assert_empty run.find(:directory)
    assert_empty run.converged
    assert_equal ['plan'], tool.calls.map { |c| c[:argv][1] }
    assert_equal YAML.safe_load(tool.calls.first[:content]), example_topology.reject { |k, _| k == 'vhost' }
    assert_includes run.log, "WARN: declare_amqp_topology[email]: changes pending:\n#{PLAN_OUTPUT}"
  end

  def test_plan_action_on_a_matching_broker_logs_up_to_date
    run = converge_email(new_run, action: :plan)

    assert_includes run.log, 'INFO: declare_amqp_topology[email]: the broker matches the topology'
    assert_empty run.converged
  end

  def test_connection_settings_travel_in_the_environment
    # Pins: URLs (without credentials) and credentials are environment variables; the
    # argv holds only the subcommand, the file and flags.
    tool = FakeTool.new
    run = converge_email(new_run(tool: tool), amqp_url: 'amqps://mq.example.com:5671/mail',
                                               management_url: 'https://mq.example.com:15671')

    assert_equal({ 'AMQP_URL' => 'amqps://mq.example.com:5671/mail',
                   'RABBITMQ_MANAGEMENT_URL' => 'https://mq.example.com:15671',
                   'AMQP_USER' => 'alice', 'AMQP_PASS' => PASSWORD }, run.commands.first[:env])
    assert_equal [BIN, 'plan', PATH, '--detailed-exitcode'], run.commands.first[:argv]
  end

  def test_urls_with_credentials_are_refused
    # Pins: a URL that carries credentials would be printed by Chef; it is rejected.
    %i(amqp_url management_url).each do |prop|
      url = prop == :amqp_url ? 'amqp://alice:pw@host:5672/' : 'http://alice:pw@host:15672'
      error = assert_raises(ChefStub::ValidationFailed) { converge_email(new_run, prop => url) }
      assert_includes error.message, 'must not carry credentials'
    end
  end

  def test_user_and_password_are_sensitive_properties
    # Pins: Chef suppresses them when it prints the resource (e.g. on a failed run).
    properties = ChefStub::Run.new([COOKBOOK_DIR]).custom_resources[:declare_amqp_topology].properties
    assert_equal [true, true], [properties[:user][:sensitive], properties[:password][:sensitive]]
    run = converge_email(new_run)
    text = run.resources.first.to_text

    assert_includes text, "  password #{ChefStub::SUPPRESSED}"
    assert_includes text, "  user #{ChefStub::SUPPRESSED}"
  end

  def test_password_reaches_no_command_line_log_or_error
    # Pins: across apply, why-run and failure - even when the tool echoes the
    # password - it is only ever in the command's environment.
    echoing = "connecting as alice:#{PASSWORD}\n"
    scenarios = [
      [{ plan: [2, echoing, ''], apply: [0, echoing, ''] }, {}],
      [{ plan: [2, echoing, ''] }, { whyrun: true }],
      [{ plan: [2, echoing, ''] }, { action: :plan }],
    ]
    scenarios.each do |answers, options|
      tool = FakeTool.new(**answers)
      run = new_run(tool: tool, whyrun: options.fetch(:whyrun, false))
      converge_email(run, **options.except(:whyrun))

      refute_includes run.printable, PASSWORD
      assert(run.commands.all? { |c| c[:env]['AMQP_PASS'] == PASSWORD })
    end

    tool = FakeTool.new(plan: [1, echoing, echoing])
    run = new_run(tool: tool)
    error = assert_raises(DeclareAmqp::Error) { converge_email(run) }
    refute_includes error.message, PASSWORD
    assert_includes error.message, 'alice:********'
  end

  def test_source_file_in_the_declaring_cookbook
    # Pins: `source` names a file in files/ of the cookbook that declares the resource.
    Dir.mktmpdir do |dir|
      wrapper = File.join(dir, 'wrapper')
      FileUtils.mkdir_p(File.join(wrapper, 'files'))
      File.write(File.join(wrapper, 'files', 'email.yml'), "vhost: /\nexchanges: []\n")
      run = new_run(more_cookbooks: [wrapper])
      run.converge_inline('wrapper') do
        declare_amqp_topology('email') { source 'email.yml' }
      end

      assert_equal "vhost: /\nexchanges: []\n", run.find(:file, PATH).first.props[:content]
    end
  end

  def test_source_absolute_path
    Dir.mktmpdir do |dir|
      source_path = File.join(dir, 'team.yml')
      File.write(source_path, "queues: []\n")
      run = new_run.converge_inline('wrapper') do
        declare_amqp_topology('team') { source source_path }
      end

      assert_equal "queues: []\n", run.find(:file, '/etc/declare-amqp/team.yml').first.props[:content]
    end
  end

  def test_name_must_be_a_plain_file_name
    # Pins: <config_dir>/<name>.yml stays inside config_dir.
    ['../passwd', 'a/b', '.hidden', ''].each do |bad|
      error = assert_raises(ArgumentError) do
        new_run.converge_inline('wrapper') { declare_amqp_topology(bad) { topology({}) } }
      end
      assert_includes error.message, 'the name becomes a file name'
    end
  end

  def test_topology_and_source_are_exclusive_and_vhost_needs_a_hash
    [
      [->(r) { r.topology({}) && r.source('/x.yml') }, 'set exactly one of topology and source'],
      [->(_r) {}, 'set exactly one of topology and source'],
      [->(r) { r.source('/x.yml') && r.vhost('mail') }, 'vhost is set inside a source file'],
    ].each do |configure, message|
      error = assert_raises(ArgumentError) do
        new_run.converge_inline('wrapper') { declare_amqp_topology('t') { configure.call(self) } }
      end
      assert_includes error.message, message
    end
  end
  APP_PASSWORD = 'app-pa55-zx81'

  def test_users_passwords_travel_only_in_the_environment
    # Pins: a user's password becomes a password_env reference in the 0600 file,
    # its value is only in the command's environment, never in argv, the file,
    # the log or what converged; permissions pass through as written.
    tool = FakeTool.new(plan: [2, "  + user     app\n", ''], apply: [0, "Applied.\n", ''])
    run = new_run(tool: tool)
    run.converge_inline('wrapper') do
      declare_amqp_topology 'app' do
        topology('queues' => [{ 'name' => 'app.q' }])
        users [{ 'name' => 'app', 'tags' => [], 'password' => APP_PASSWORD },
               { 'name' => 'x509-app', 'tags' => [] }]
        permissions [{ 'user' => 'app', 'configure' => '^app\\.', 'write' => '.*', 'read' => '.*' }]
        user 'alice'
        password PASSWORD
      end
    end

    content = run.find(:file, '/etc/declare-amqp/app.yml').first.props[:content]
    data = YAML.safe_load(content)
    assert_equal [{ 'name' => 'app', 'tags' => [], 'password_env' => 'DECLARE_AMQP_USER_PASSWORD_0' },
                  { 'name' => 'x509-app', 'tags' => [] }], data['users']
    assert_equal [{ 'user' => 'app', 'configure' => '^app\\.', 'write' => '.*', 'read' => '.*' }],
                 data['permissions']
    assert_equal %w(plan apply), tool.calls.map { |c| c[:argv][1] }
    tool.calls.each do |call|
      assert_equal APP_PASSWORD, call[:env]['DECLARE_AMQP_USER_PASSWORD_0']
      refute(call[:argv].any? { |a| a.include?(APP_PASSWORD) })
      refute_includes call[:content].to_s, APP_PASSWORD
    end
    assert_equal '0600', run.find(:file, '/etc/declare-amqp/app.yml').first.props[:mode]
    visible = [content, run.log, run.converged, run.find(:file).map(&:to_s)].to_s
    refute_includes visible, APP_PASSWORD
  end

  def test_a_tool_error_that_echoes_a_user_password_is_redacted
    tool = FakeTool.new(plan: [1, '', "error: something about #{APP_PASSWORD}\n"])
    error = assert_raises(DeclareAmqp::Error) do
      new_run(tool: tool).converge_inline('wrapper') do
        declare_amqp_topology 'app' do
          topology({})
          users [{ 'name' => 'app', 'password' => APP_PASSWORD }]
        end
      end
    end
    refute_includes error.message, APP_PASSWORD
  end

  ORIGIN_URI = 'amqp://fed:0rigin-pa55%2Fq@origin.example/billing'

  def test_federation_and_shovel_uris_travel_only_in_the_environment
    # Pins: the URIs a topology's uri_env / src_uri_env name come from the sensitive uris
    # property and reach declare-amqp only in its environment: not in the 0600 file, argv,
    # the log, what converged, or an error that echoes the URI or its password.
    tool = FakeTool.new(plan: [2, "  + federation upstream origin\n", ''], apply: [0, "Applied.\n", ''])
    run = new_run(tool: tool)
    run.converge_inline('wrapper') do
      declare_amqp_topology 'fed' do
        topology('federation_upstreams' => [{ 'name' => 'origin', 'uri_env' => 'ORIGIN_URI' }],
                 'shovels' => [{ 'name' => 'move', 'src_uri_env' => 'ORIGIN_URI', 'src_queue' => 'a',
                                 'dest_uri' => 'amqp://', 'dest_queue' => 'b' }])
        uris('ORIGIN_URI' => ORIGIN_URI)
      end
    end
    content = run.find(:file, '/etc/declare-amqp/fed.yml').first.props[:content]
    assert_equal 'ORIGIN_URI', YAML.safe_load(content)['federation_upstreams'][0]['uri_env']
    assert_equal %w(plan apply), tool.calls.map { |c| c[:argv][1] }
    tool.calls.each do |call|
      assert_equal ORIGIN_URI, call[:env]['ORIGIN_URI']
      refute(call[:argv].any? { |a| a.include?('0rigin') })
    end
    visible = [content, run.log, run.converged, run.find(:file).map(&:to_s)].to_s
    refute_includes visible, '0rigin'

    echoing = FakeTool.new(plan: [1, '', "error: #{ORIGIN_URI} refused; password 0rigin-pa55/q\n"])
    error = assert_raises(DeclareAmqp::Error) do
      new_run(tool: echoing).converge_inline('wrapper') do
        declare_amqp_topology 'fed' do
          topology({})
          uris('ORIGIN_URI' => ORIGIN_URI)
        end
      end
    end
    refute_includes error.message, '0rigin'
  end

  def test_uris_are_sensitive_and_named_like_environment_variables
    properties = ChefStub::Run.new([COOKBOOK_DIR]).custom_resources[:declare_amqp_topology].properties
    assert properties[:uris][:sensitive]
    error = assert_raises(ChefStub::ValidationFailed) do
      new_run.converge_inline('wrapper') { declare_amqp_topology('t') { topology({}) && uris('bad name' => 'amqp://') } }
    end
    assert_includes error.message, 'must map environment variable names'
  end

  def test_users_go_with_topology_not_source
    error = assert_raises(ArgumentError) do
      new_run.converge_inline('wrapper') do
        declare_amqp_topology('t') { source('/x.yml') && users([{ 'name' => 'a' }]) }
      end
    end
    assert_includes error.message, 'users and permissions go with topology'
  end
end
