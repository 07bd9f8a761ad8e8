#
# Recipe:: declare_amqp::topologies
#
# Applies every topology named under node['declare_amqp']['topologies'] (from
# a role, an environment or a wrapper cookbook), after installing the tool.
#
include_recipe 'declare_amqp::default'

attrs = node['declare_amqp']
credentials = attrs['credentials']
item = credentials['data_bag'] ? data_bag_item(credentials['data_bag'], credentials['data_bag_item']) : {}
amqp_user = item['user'] || credentials['user']
amqp_password = item['password'] || node.run_state['declare_amqp_password']
# Passwords of the users the topologies declare, by user name: from the data bag item's
# `user_passwords`, or node.run_state (never from attributes, which Chef stores and shows).
user_passwords = (item['user_passwords'] || {}).merge(node.run_state['declare_amqp_user_passwords'] || {})
# URIs of federation upstreams and shovels, by the environment variable their uri_env names:
# the data bag item's `uris`, or node.run_state (they carry passwords, like the above).
federation_uris = (item['uris'] || {}).merge(node.run_state['declare_amqp_uris'] || {})

attrs['topologies'].each do |topology_name, spec|
  declare_amqp_topology topology_name do
    topology spec['topology'] if spec['topology']
    source spec['source'] if spec['source']
    cookbook spec['cookbook'] if spec['cookbook']
    vhost spec['vhost'] if spec['vhost']
    prune spec['prune'] unless spec['prune'].nil?
    if spec['users']
      users(spec['users'].map do |u|
        entry = DeclareAmqp::Helpers.plain(u)
        given = %w(password password_env password_file password_hash).any? { |k| entry.key?(k) }
        next entry if given || !user_passwords.key?(entry['name'])

        entry.merge('password' => user_passwords[entry['name']])
      end)
    end
    uris federation_uris unless federation_uris.empty?
    permissions spec['permissions'] if spec['permissions']
    topic_permissions spec['topic_permissions'] if spec['topic_permissions']
    amqp_url spec['amqp_url'] || attrs['amqp_url']
    management = spec['management_url'] || attrs['management_url']
    management_url management if management
    user amqp_user if amqp_user
    password amqp_password if amqp_password
    action (spec['action'] || 'apply').to_sym
  end
end
