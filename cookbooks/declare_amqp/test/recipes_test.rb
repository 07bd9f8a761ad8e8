# frozen_string_literal: true

require_relative 'test_helper'

# The recipes: what declare_amqp::default installs, and which topologies
# declare_amqp::topologies and declare_amqp::email declare, with which credentials.
class RecipesTest < Minitest::Test
  include CookbookTestHelpers

  def test_default_installs_a_pinned_version_into_its_own_virtualenv
    # Pins: exact resources, in order, and the exact (shell-free) commands.
    run = new_run.converge_recipes('declare_amqp::default')

    assert_equal [%i(package), %i(execute), %i(execute), %i(link)], run.resources.map { |r| [r.type] }
    package, venv, pip, link = run.resources
    assert_equal %w(python3 python3-venv), package.name
    assert_equal({ command: ['/usr/bin/python3', '-m', 'venv', '/opt/declare-amqp'],
                   creates: '/opt/declare-amqp/bin/python' }, venv.props)
    assert_equal({ command: ['/opt/declare-amqp/bin/pip', 'install', '--quiet', '--disable-pip-version-check',
                             'declare-amqp==0.2.0'] }, pip.props)
    assert_equal 'install declare-amqp==0.2.0 into /opt/declare-amqp', pip.name
    refute pip.skipped, 'pip runs while the version is not installed'
    assert_equal ['/usr/local/bin/declare-amqp', { to: '/opt/declare-amqp/bin/declare-amqp' }],
                 [link.name, link.props]
  end

  def test_default_installs_from_a_source_and_index_when_given
    run = new_run(attributes: { 'declare_amqp' => {
                    'version' => '0.3.0', 'source' => '/srv/declare-amqp',
                    'pip_index_url' => 'https://pypi.internal/simple', 'venv_dir' => '/opt/da',
                  } }).converge_recipes('declare_amqp::default')

    assert_equal ['/opt/da/bin/pip', 'install', '--quiet', '--disable-pip-version-check',
                  '--index-url', 'https://pypi.internal/simple', '/srv/declare-amqp'],
                 run.find(:execute)[1].props[:command]
  end

  def test_pip_is_skipped_only_when_the_pinned_version_is_installed
    Dir.mktmpdir do |venv|
      site = File.join(venv, 'lib', 'python3.11', 'site-packages')
      FileUtils.mkdir_p(File.join(site, 'declare_amqp-0.1.0.dist-info'))
      attributes = { 'declare_amqp' => { 'venv_dir' => venv } }
      assert_equal false, new_run(attributes: attributes).converge_recipes('declare_amqp').find(:execute)[1].skipped

      FileUtils.mkdir_p(File.join(site, 'declare_amqp-0.2.0.dist-info'))
      assert_equal true, new_run(attributes: attributes).converge_recipes('declare_amqp').find(:execute)[1].skipped
    end
  end

  def test_version_must_be_a_pip_version
    error = assert_raises(ArgumentError) do
      new_run(attributes: { 'declare_amqp' => { 'version' => '1.0; rm -rf /' } }).converge_recipes('declare_amqp')
    end
    assert_includes error.message, 'must be a pip version'
  end

  def test_email_recipe_provisions_topology_example_yml
    # Pins: the email example renders exactly the objects of the repository's topology.example.yml.
    run = new_run.converge_recipes('declare_amqp::email')
    file = run.find(:file, '/etc/declare-amqp/email.yml').first

    assert_equal example_topology, YAML.safe_load(file.props[:content])
    assert_equal %w(package execute execute link declare_amqp_topology[email] directory file),
                 run.resources.map { |r| r.is_a?(ChefStub::Builtin) ? r.type.to_s : r.to_s }
  end

  def test_topologies_recipe_takes_role_attributes_and_data_bag_credentials
    # Pins: a role's attributes choose vhost, prune and URLs; credentials come from the data bag item.
    role = { 'declare_amqp' => {
      'amqp_url' => 'amqp://mq1:5672/', 'management_url' => 'http://mq1:15672',
      'credentials' => { 'data_bag' => 'rabbitmq', 'data_bag_item' => 'provisioner' },
      'topologies' => { 'billing' => { 'topology' => { 'queues' => [{ 'name' => 'invoices' }] },
                                       'vhost' => 'billing', 'prune' => true } },
    } }
    bags = { 'rabbitmq' => { 'provisioner' => { 'user' => 'prov', 'password' => PASSWORD } } }
    tool = FakeTool.new(plan: [2, "+ create queue invoices\n", ''])
    run = new_run(attributes: role, data_bags: bags, tool: tool).converge_recipes('declare_amqp::topologies')

    assert_equal "vhost: billing\nqueues:\n- name: invoices\n",
                 run.find(:file, '/etc/declare-amqp/billing.yml').first.props[:content].sub(/\A#.*\n---\n/, '')
    assert_equal [['/usr/local/bin/declare-amqp', 'plan', '/etc/declare-amqp/billing.yml', '--detailed-exitcode',
                   '--prune'],
                  ['/usr/local/bin/declare-amqp', 'apply', '/etc/declare-amqp/billing.yml', '--prune']],
                 run.commands.map { |c| c[:argv] }
    assert_equal({ 'AMQP_URL' => 'amqp://mq1:5672/', 'RABBITMQ_MANAGEMENT_URL' => 'http://mq1:15672',
                   'AMQP_USER' => 'prov', 'AMQP_PASS' => PASSWORD }, run.commands.first[:env])
    refute_includes run.printable, PASSWORD
  end

  def test_topologies_recipe_takes_federation_uris_from_the_data_bag
    # Pins: the data bag item's `uris` (variable => URI with a password) reach declare-amqp
    # only in its environment, for the uri_env the topology names; Chef prints none of them.
    uri = 'amqp://fed:Bag-0rigin@origin.example/x'
    role = { 'declare_amqp' => {
      'credentials' => { 'data_bag' => 'rabbitmq', 'data_bag_item' => 'provisioner' },
      'topologies' => { 'fed' => { 'topology' => {
        'federation_upstreams' => [{ 'name' => 'origin', 'uri_env' => 'ORIGIN_URI' }],
      } } },
    } }
    bags = { 'rabbitmq' => { 'provisioner' => { 'user' => 'prov', 'password' => PASSWORD,
                                                'uris' => { 'ORIGIN_URI' => uri } } } }
    tool = FakeTool.new(plan: [2, "+ federation upstream origin\n", ''])
    run = new_run(attributes: role, data_bags: bags, tool: tool).converge_recipes('declare_amqp::topologies')

    assert_equal uri, run.commands.first[:env]['ORIGIN_URI']
    refute(run.commands.any? { |c| c[:argv].any? { |a| a.include?('0rigin') } })
    refute_includes run.printable, 'Bag-0rigin'
    refute_includes run.find(:file, '/etc/declare-amqp/fed.yml').first.props[:content], 'Bag-0rigin'
  end

  def test_topologies_recipe_takes_the_password_from_run_state
    # Pins: without a data bag, the user is an attribute and the password comes from
    # node.run_state (filled by a wrapper from a secrets store), never from attributes.
    role = { 'declare_amqp' => { 'credentials' => { 'user' => 'ops' },
                                 'topologies' => { 'email' => { 'vhost' => 'mail', 'action' => 'plan' } } } }
    tool = FakeTool.new
    run = new_run(attributes: role, tool: tool)
    run.node.run_state['declare_amqp_password'] = PASSWORD
    run.converge_recipes('declare_amqp::email')

    assert_equal({ 'AMQP_URL' => 'amqp://127.0.0.1:5672/', 'AMQP_USER' => 'ops', 'AMQP_PASS' => PASSWORD },
                 run.commands.first[:env])
    assert_equal 'mail', YAML.safe_load(tool.calls.first[:content])['vhost'], 'the role overrides the vhost'
    assert_empty run.find(:file), 'action plan from the role writes no file'
  end
end
