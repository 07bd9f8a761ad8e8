# frozen_string_literal: true

# Shared setup of the cookbook's minitest suite (run with `ruby test/all.rb`).
require 'minitest/autorun'
require 'tmpdir'
require 'yaml'
require_relative 'chef_stub'
require_relative '../libraries/helpers'

COOKBOOK_DIR = File.expand_path('..', __dir__)
REPO_ROOT = File.expand_path('../../..', __dir__)

# A scripted declare-amqp: answers plan and apply with the given
# [exitstatus, stdout, stderr] and remembers what each call saw.
class FakeTool
  attr_reader :calls

  def initialize(plan: [0, "No changes.\n", ''], apply: [0, "Applied.\n", ''])
    @answers = { 'plan' => plan, 'apply' => apply }
    @calls = []
  end

  def call(argv, env)
    file = argv[2]
    @calls << { argv: argv, env: env, content: File.exist?(file) ? File.read(file) : nil,
                mode: File.exist?(file) ? File.stat(file).mode & 0o777 : nil }
    @answers.fetch(argv[1])
  end

  def to_proc
    method(:call).to_proc
  end
end

module CookbookTestHelpers
  PASSWORD = 's3cret-pa55'

  # A stub chef-client run with this cookbook (and +more_cookbooks+) loaded.
  def new_run(attributes: {}, tool: FakeTool.new, more_cookbooks: [], **options)
    ChefStub::Run.new([COOKBOOK_DIR, *more_cookbooks], attributes: attributes, shell: tool.to_proc, **options)
  end

  # The Hash of topology.example.yml, as Python's yaml.safe_load would also see it.
  def example_topology
    YAML.safe_load(File.read(File.join(REPO_ROOT, 'topology.example.yml')))
  end

  # The email topology declared directly by a wrapper recipe.
  def converge_email(run, **properties)
    email_topology = example_topology.reject { |key, _| key == 'vhost' }
    run.converge_inline('wrapper') do
      declare_amqp_topology 'email' do
        topology email_topology
        user 'alice'
        password PASSWORD
        properties.each { |prop, value| send(prop, value) }
      end
    end
  end
end
