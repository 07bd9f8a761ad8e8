# Installation (recipe declare_amqp::default).
#
# The version pip installs into the tool's own virtual environment. With
# `source` set, pip installs that instead (a local checkout, sdist or wheel
# path, or a URL); keep `version` equal to the version the source provides,
# because the install is skipped when that version is already present.
default['declare_amqp']['version'] = '0.2.0'
default['declare_amqp']['source'] = nil
default['declare_amqp']['pip_index_url'] = nil
default['declare_amqp']['python'] = '/usr/bin/python3'
default['declare_amqp']['python_packages'] = %w(python3 python3-venv)
default['declare_amqp']['venv_dir'] = '/opt/declare-amqp'
default['declare_amqp']['bin_link'] = '/usr/local/bin/declare-amqp'

# Where declare_amqp_topology writes <name>.yml (directory 0700, files 0600, root).
default['declare_amqp']['config_dir'] = '/etc/declare-amqp'

# Connection, without credentials (the resource refuses URLs that carry any).
# management_url nil lets declare-amqp derive it from the AMQP URL.
default['declare_amqp']['amqp_url'] = 'amqp://127.0.0.1:5672/'
default['declare_amqp']['management_url'] = nil

# Credentials for recipe declare_amqp::topologies. The password is never an
# attribute (attributes are saved on the Chef server, readable by every node):
# it comes from the data bag item below (encrypted data bags work unchanged),
# or, when no data bag is named, from node.run_state['declare_amqp_password'],
# which a wrapper cookbook may fill from a secrets store.
default['declare_amqp']['credentials']['user'] = nil
default['declare_amqp']['credentials']['data_bag'] = nil
default['declare_amqp']['credentials']['data_bag_item'] = nil

# Topologies applied by recipe declare_amqp::topologies, by name. Each entry:
#   'topology' => Hash in the declare-amqp YAML format, or
#   'source'   => a file of the declaring cookbook (files/) or an absolute path;
#   optional 'vhost', 'prune' (default false), 'amqp_url', 'management_url',
#   'action' ('apply' or 'plan').
default['declare_amqp']['topologies'] = {}
