#
# Resource:: declare_amqp_topology
#
# Writes a topology file and lets declare-amqp converge the broker to it. No
# topology logic lives here: validation, planning and conflicts are the
# tool's. The resource is "updated" only when the tool's plan has changes
# (`plan --detailed-exitcode` exits 2), so a matching broker reports up to
# date and why-run prints the plan. A conflict or error fails the run with the
# tool's own message.
#
# Credentials reach the command only through its environment (AMQP_USER,
# AMQP_PASS, the users' passwords, the federation and shovel URIs): never an
# argument, never a URL, never a log line.
#
unified_mode true
provides :declare_amqp_topology

description 'Applies a declare-amqp topology (exchanges, queues, bindings, policies) to RabbitMQ'

property :topology, Hash,
         description: 'The topology, in the declare-amqp YAML format (from attributes, a role or a data bag)'
property :source, String,
         description: 'Instead of topology: a file in files/ of `cookbook`, or an absolute path on the node'
property :cookbook, String,
         description: 'The cookbook holding `source` (default: the cookbook that declares the resource)'
property :vhost, String,
         description: "The topology's default vhost (top-level `vhost` of the file); only with topology"
property :amqp_url, String,
         default: lazy { node['declare_amqp']['amqp_url'] },
         callbacks: { 'must not carry credentials; use the user and password properties' =>
                        ->(url) { DeclareAmqp::Helpers.url_without_credentials?(url) } },
         description: 'amqp:// or amqps:// URL without credentials (AMQP_URL)'
property :management_url, String,
         callbacks: { 'must not carry credentials; use the user and password properties' =>
                        ->(url) { DeclareAmqp::Helpers.url_without_credentials?(url) } },
         description: 'Management API URL without credentials (RABBITMQ_MANAGEMENT_URL)'
property :user, String, sensitive: true, description: 'Broker user (AMQP_USER)'
property :password, String, sensitive: true, description: 'Broker password (AMQP_PASS)'
property :users, Array, default: [], sensitive: true,
         description: 'Users ({name, tags, password | password_file | password_hash, ...}); ' \
                      'a password reaches declare-amqp only through its environment'
property :uris, Hash, default: {}, sensitive: true,
         callbacks: { 'must map environment variable names (A-Z, 0-9, _) to URIs' =>
                        ->(uris) { DeclareAmqp::Helpers.uri_variables?(uris) } },
         description: 'URIs of federation upstreams and shovels by environment variable name, ' \
                      'for the uri_env / src_uri_env / dest_uri_env the topology names; they ' \
                      'reach declare-amqp only through its environment'
property :permissions, Array, default: [],
         description: 'Permissions ({user, vhost, configure, write, read})'
property :topic_permissions, Array, default: [],
         description: 'Topic permissions ({user, vhost, exchange, write, read})'
property :prune, [true, false], default: false,
         description: 'Delete what the file no longer declares, in the vhosts it names'
property :config_dir, String, default: lazy { node['declare_amqp']['config_dir'] }
property :command, String, default: lazy { node['declare_amqp']['bin_link'] },
         description: 'The declare-amqp executable'
property :timeout, Integer, default: 900, description: 'Seconds one declare-amqp run may take'

default_action :apply

# Writes the file and applies it when declare-amqp plans changes.
action :apply do
  yaml = topology_yaml
  path = topology_path

  directory new_resource.config_dir do
    owner 'root'
    group 'root'
    mode '0700'
  end

  file path do
    content yaml
    owner 'root'
    group 'root'
    mode '0600'
    sensitive true
  end

  # In why-run the file above is not written: plan a private copy instead.
  with_topology_file(yaml, whyrun_mode? ? nil : path) do |planned|
    plan = declare_amqp(:plan, planned)
    case plan.exitstatus
    when 0
      Chef::Log.info("#{new_resource}: the broker matches #{path}")
    when 2
      converge_by(["apply #{path} to the broker:", *redacted(plan.stdout).lines.map(&:chomp)]) do
        result = declare_amqp(:apply, path)
        fail_with(:apply, result) unless result.exitstatus == 0
        Chef::Log.info("#{new_resource}: applied #{path}\n#{redacted(result.stdout)}")
      end
    else
      fail_with(:plan, plan)
    end
  end
end

# Reports what declare-amqp would change; changes nothing.
action :plan do
  with_topology_file(topology_yaml) do |planned|
    plan = declare_amqp(:plan, planned)
    case plan.exitstatus
    when 0 then Chef::Log.info("#{new_resource}: the broker matches the topology")
    when 2 then Chef::Log.warn("#{new_resource}: changes pending:\n#{redacted(plan.stdout)}")
    else fail_with(:plan, plan)
    end
  end
end

action_class do
  require 'tempfile'

  # Where action :apply keeps the topology: <config_dir>/<name>.yml.
  def topology_path
    unless new_resource.name.match?(/\A[A-Za-z0-9][A-Za-z0-9_.-]*\z/)
      raise ArgumentError, "#{new_resource}: the name becomes a file name: letters, digits, '_', '.', '-'"
    end
    ::File.join(new_resource.config_dir, "#{new_resource.name}.yml")
  end

  # The file's content, from the topology Hash or the source file.
  def topology_yaml
    if new_resource.topology.nil? == new_resource.source.nil?
      raise ArgumentError, "#{new_resource}: set exactly one of topology and source"
    end
    if new_resource.source
      raise ArgumentError, "#{new_resource}: users and permissions go with topology, not source" if access?
      return ::File.read(source_location)
    end
    DeclareAmqp::Helpers.render_topology(topology_with_access,
                                         vhost: new_resource.vhost, origin: new_resource.to_s)
  end

  def access?
    !(new_resource.users.empty? && new_resource.permissions.empty? &&
      new_resource.topic_permissions.empty?)
  end

  # The topology with the users (passwords as environment references) and permissions.
  def topology_with_access
    data = DeclareAmqp::Helpers.plain(new_resource.topology)
    users, = DeclareAmqp::Helpers.user_entries(new_resource.users)
    data['users'] = users unless users.empty?
    { 'permissions' => new_resource.permissions,
      'topic_permissions' => new_resource.topic_permissions }.each do |key, value|
      data[key] = DeclareAmqp::Helpers.plain(value) unless value.empty?
    end
    data
  end

  def source_location
    raise ArgumentError, "#{new_resource}: vhost is set inside a source file, not as a property" if new_resource.vhost
    return new_resource.source if new_resource.source.start_with?('/')
    cookbook = run_context.cookbook_collection[new_resource.cookbook || new_resource.cookbook_name]
    cookbook.preferred_filename_on_disk_location(node, :files, new_resource.source)
  end

  # Yields +path+, or, without one, a private (0600) temporary copy of +yaml+.
  def with_topology_file(yaml, path = nil)
    return yield(path) if path
    Tempfile.create(["declare-amqp-#{new_resource.name}-", '.yml']) do |tmp|
      tmp.write(yaml)
      tmp.flush
      yield tmp.path
    end
  end

  # Runs declare-amqp plan or apply on +file+: no shell, credentials in the environment only.
  def declare_amqp(subcommand, file)
    argv = DeclareAmqp::Helpers.command(new_resource.command, subcommand, file, prune: new_resource.prune)
    env = DeclareAmqp::Helpers.environment(
      amqp_url: new_resource.amqp_url, management_url: new_resource.management_url,
      user: new_resource.user, password: new_resource.password
    )
    env = env.merge(DeclareAmqp::Helpers.user_entries(new_resource.users).last)
    env = env.merge(DeclareAmqp::Helpers.plain(new_resource.uris).transform_values(&:to_s))
    shell_out(*argv, environment: env, timeout: new_resource.timeout)
  end

  def redacted(text)
    user_passwords = DeclareAmqp::Helpers.user_entries(new_resource.users).last.values
    uri_secrets = DeclareAmqp::Helpers.uri_secrets(new_resource.uris.values)
    DeclareAmqp::Helpers.redact(text, [new_resource.password, *user_passwords, *uri_secrets])
  end

  def fail_with(subcommand, result)
    output = [result.stderr, result.stdout].map { |s| redacted(s).strip }.reject(&:empty?).join("\n")
    raise DeclareAmqp::Error,
          "#{new_resource}: declare-amqp #{subcommand} failed (exit #{result.exitstatus}):\n#{output}"
  end
end
