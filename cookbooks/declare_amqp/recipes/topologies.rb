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

attrs['topologies'].each do |topology_name, spec|
  declare_amqp_topology topology_name do
    topology spec['topology'] if spec['topology']
    source spec['source'] if spec['source']
    cookbook spec['cookbook'] if spec['cookbook']
    vhost spec['vhost'] if spec['vhost']
    prune spec['prune'] unless spec['prune'].nil?
    amqp_url spec['amqp_url'] || attrs['amqp_url']
    management = spec['management_url'] || attrs['management_url']
    management_url management if management
    user amqp_user if amqp_user
    password amqp_password if amqp_password
    action (spec['action'] || 'apply').to_sym
  end
end
