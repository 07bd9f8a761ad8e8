name             'declare_amqp'
maintainer       'declare-amqp maintainers'
maintainer_email 'declare-amqp@example.invalid'
license          'MIT'
description      'Installs declare-amqp and applies RabbitMQ topologies (exchanges, queues, ' \
                 'bindings, policies) from node attributes, roles or data bags'
version          '0.2.0'
chef_version     '>= 16.0'

supports 'debian'
supports 'ubuntu'
