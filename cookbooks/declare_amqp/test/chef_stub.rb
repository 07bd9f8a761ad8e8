# frozen_string_literal: true

# A small stand-in for the parts of the Chef DSL this cookbook uses, so that
# the recipes and the custom resource run under plain Ruby (Chef itself is not
# installable here) and tests can see exactly what they would do.
#
# What it models, as Chef does:
# - node attributes: attribute files write node.default, a role's attributes
#   (the `attributes:` of a Run) take precedence, reads return frozen Mash
#   objects (a Hash subclass, like Chef::Node::ImmutableMash);
# - recipes compile first (include_recipe loads each recipe once), then
#   resources converge in order; custom resources run in unified mode, so the
#   resources an action declares converge at once;
# - custom resources: property (types, lazy defaults, callbacks, sensitive),
#   default_action, action, action_class; converge_by honours why-run;
# - a resource's text form (what Chef prints when a run fails) shows
#   "*sensitive value suppressed*" for sensitive properties.
#
# What it records instead of doing: packages, execute and link resources
# (guards are evaluated), and shell_out, which goes to a fake given by the
# test unless the Run was created with execute: true. file and directory
# resources are written to disk only with write_files: true.
require 'fileutils'
require 'open3'

module Chef
  # Chef::Log, writing into the current stub run.
  module Log
    %i(debug info warn error).each do |level|
      define_singleton_method(level) { |message| ChefStub::Run.current.log << "#{level.upcase}: #{message}" }
    end
  end
end

module ChefStub
  SUPPRESSED = '*sensitive value suppressed*'

  # Stands in for Chef::Node::ImmutableMash.
  class Mash < Hash; end

  # Chef's lazy { } property value.
  class Lazy
    def initialize(&block)
      @block = block
    end

    def evaluate(resource)
      resource.instance_exec(&@block)
    end
  end

  # Raised by a property setter, like Chef::Exceptions::ValidationFailed.
  class ValidationFailed < StandardError; end

  # The result of shell_out.
  ShellResult = Struct.new(:exitstatus, :stdout, :stderr)

  # Node attributes: default (attribute files, node.default) under role attributes.
  class Node
    attr_reader :default, :run_state

    def initialize(role_attributes)
      @default = vivid
      @role = role_attributes
      @run_state = {}
    end

    def [](key)
      merged[key]
    end

    private

    def vivid
      Hash.new { |hash, key| hash[key] = Hash.new(&hash.default_proc) }
    end

    def merged
      freeze_deep(deep_merge(@default, @role))
    end

    def deep_merge(low, high)
      return high unless low.is_a?(Hash) && high.is_a?(Hash)

      keys = (low.keys.map(&:to_s) + high.keys.map(&:to_s)).uniq
      keys.to_h do |key|
        [key, high.key?(key) ? deep_merge(low[key], high[key]) : low[key]]
      end
    end

    def freeze_deep(value)
      case value
      when Hash then Mash[value.map { |k, v| [k.to_s, freeze_deep(v)] }].freeze
      when Array then value.map { |v| freeze_deep(v) }.freeze
      else value.frozen? ? value : value.dup.freeze
      end
    end
  end

  # A built-in resource (package, execute, link, file, directory, ...): records
  # whatever its block sets.
  class Builtin
    attr_reader :type, :name, :props, :parent
    attr_accessor :skipped

    def initialize(type, name, parent)
      @type = type
      @name = name
      @parent = parent
      @props = {}
      @guards = []
    end

    def not_if(&block)
      @guards << [:not_if, block]
    end

    def only_if(&block)
      @guards << [:only_if, block]
    end

    # True when Chef would run it: no guard says skip and `creates` is absent.
    def should_run?
      return false if props[:creates] && ::File.exist?(props[:creates])

      @guards.all? { |kind, block| kind == :only_if ? block.call : !block.call }
    end

    def method_missing(name, *args)
      return super if args.size > 1
      return props[name] if args.empty?

      props[name] = args.first
    end

    def respond_to_missing?(_name, _private = false)
      false
    end

    def to_s
      "#{type}[#{name}]"
    end

    # What Chef would print about it; a sensitive resource shows nothing.
    def to_text
      return "#{self} #{SUPPRESSED}" if props[:sensitive]

      "#{self} #{props.inspect}"
    end
  end

  # Base class of custom resources loaded from resources/*.rb.
  class CustomResource
    class << self
      attr_accessor :resource_name, :action_module

      def properties
        @properties ||= {}
      end

      def actions
        @actions ||= {}
      end

      def provides(name)
        self.resource_name = name.to_sym
      end

      def unified_mode(value)
        @unified_mode = value
      end

      def unified_mode?
        @unified_mode == true
      end

      def description(_text) end

      def default_action(name = nil)
        name ? @default_action = name : (@default_action || actions.keys.first)
      end

      def lazy(&block)
        Lazy.new(&block)
      end

      def property(name, type = nil, default: nil, sensitive: false, callbacks: {}, description: nil)
        _ = description
        properties[name] = { type: type, default: default, sensitive: sensitive, callbacks: callbacks }
        define_method(name) do |*args|
          args.empty? ? read_property(name) : write_property(name, args.first)
        end
      end

      def action(name, &block)
        actions[name] = block
      end

      def action_class(&block)
        action_module.module_eval(&block)
      end
    end

    attr_reader :name, :node, :set_properties
    attr_accessor :cookbook_name, :declared_action

    def initialize(name, node)
      @name = name
      @node = node
      @set_properties = {}
    end

    def lazy(&block)
      Lazy.new(&block)
    end

    def action(name)
      @declared_action = name
    end

    def to_s
      "#{self.class.resource_name}[#{name}]"
    end

    # What Chef prints about the resource when a run fails.
    def to_text
      lines = self.class.properties.map do |prop, spec|
        value = read_property(prop)
        next if value.nil?

        "  #{prop} #{spec[:sensitive] ? SUPPRESSED : value.inspect}"
      end
      ["#{self} do", *lines.compact, 'end'].join("\n")
    end

    private

    def read_property(name)
      return @set_properties[name] if @set_properties.key?(name)

      default = self.class.properties[name][:default]
      default.is_a?(Lazy) ? default.evaluate(self) : default
    end

    def write_property(name, value)
      spec = self.class.properties[name]
      allowed = Array(spec[:type])
      unless allowed.empty? || allowed.any? { |t| t.is_a?(Class) ? value.is_a?(t) : value == t }
        raise ValidationFailed, "#{name} must be one of #{allowed.inspect}, got #{value.inspect}"
      end
      spec[:callbacks].each do |message, check|
        raise ValidationFailed, "#{name} #{message}" unless check.call(value)
      end
      @set_properties[name] = value
    end
  end

  # A cookbook in the run's collection (run_context.cookbook_collection[name]).
  class Cookbook
    def initialize(dir)
      @dir = dir
    end

    def preferred_filename_on_disk_location(_node, segment, filename)
      ::File.join(@dir, segment.to_s, filename)
    end
  end

  # Resource-declaring methods shared by recipes and custom resource actions.
  module ResourceDSL
    BUILTINS = %i(package execute link file directory template cookbook_file remote_file).freeze

    BUILTINS.each do |type|
      define_method(type) do |name, &block|
        resource = Builtin.new(type, name, current_parent)
        resource.instance_eval(&block) if block
        declare(resource)
      end
    end

    def method_missing(name, *args, &block)
      klass = run.custom_resources[name]
      return super unless klass && args.size == 1

      resource = klass.new(args.first, run.node)
      resource.cookbook_name = current_cookbook
      resource.instance_eval(&block) if block
      declare(resource)
    end

    def respond_to_missing?(name, include_private = false)
      run.custom_resources.key?(name) || super
    end

    def node
      run.node
    end
  end

  # Where a recipe's code runs.
  class RecipeContext
    include ResourceDSL
    attr_reader :run, :current_cookbook

    def initialize(run, cookbook)
      @run = run
      @current_cookbook = cookbook
    end

    def include_recipe(spec)
      run.include_recipe(spec)
    end

    def data_bag_item(bag, item)
      run.data_bags.fetch(bag).fetch(item)
    end

    private

    def current_parent
      nil
    end

    def declare(resource)
      run.compiled << resource
      resource
    end
  end

  # Where a custom resource's action runs (Chef's action class).
  class ActionContext
    include ResourceDSL
    attr_reader :new_resource, :run

    def initialize(run, resource)
      @run = run
      @new_resource = resource
    end

    def run_context
      run
    end

    def whyrun_mode?
      run.whyrun
    end

    def current_cookbook
      new_resource.cookbook_name
    end

    # Chef::Mixin::ShellOut#shell_out: logs the command (never the environment).
    def shell_out(*argv, environment: {}, timeout: nil)
      Chef::Log.debug("sh(#{argv.join(' ')})")
      run.commands << { argv: argv, env: environment, timeout: timeout, resource: new_resource.to_s }
      result = run.shell.call(argv, environment)
      ShellResult.new(*result)
    end

    def converge_by(description)
      text = Array(description).join("\n")
      run.log << "#{whyrun_mode? ? 'Would ' : ''}#{text}"
      run.converged << { resource: new_resource.to_s, description: text }
      yield unless whyrun_mode?
    end

    private

    def current_parent
      new_resource
    end

    def declare(resource)
      run.converge(resource)
      resource
    end
  end

  # One chef-client run over the cookbooks in +cookbook_dirs+.
  class Run
    class << self
      attr_accessor :current
    end

    attr_reader :node, :custom_resources, :compiled, :resources, :commands, :converged, :log,
                :data_bags, :shell, :whyrun, :cookbook_collection

    # +shell+ answers shell_out: ->(argv, env) { [exitstatus, stdout, stderr] }.
    def initialize(cookbook_dirs, attributes: {}, data_bags: {}, shell: nil, whyrun: false,
                   execute: false, write_files: false)
      @node = Node.new(attributes)
      @data_bags = data_bags
      @whyrun = whyrun
      @write_files = write_files
      @shell = execute ? method(:real_shell) : (shell || ->(_argv, _env) { [0, '', ''] })
      @custom_resources = {}
      @compiled = []
      @resources = []
      @commands = []
      @converged = []
      @log = []
      @included = []
      @cookbook_collection = {}
      Run.current = self
      cookbook_dirs.each { |dir| load_cookbook(dir) }
    end

    # Compiles the run list, then converges it; returns self.
    def converge_recipes(*run_list)
      Run.current = self
      run_list.each { |spec| include_recipe(spec) }
      compiled.each { |resource| converge(resource) }
      self
    end

    # Compiles and converges the recipe code in +block+, as if it were a
    # recipe of +cookbook+ (a wrapper cookbook, say); returns self.
    def converge_inline(cookbook, &block)
      Run.current = self
      first = compiled.size
      RecipeContext.new(self, cookbook).instance_eval(&block)
      compiled[first..].each { |resource| converge(resource) }
      self
    end

    def include_recipe(spec)
      cookbook, recipe = spec.split('::')
      recipe ||= 'default'
      return if @included.include?("#{cookbook}::#{recipe}")

      @included << "#{cookbook}::#{recipe}"
      path = ::File.join(@dirs.fetch(cookbook), 'recipes', "#{recipe}.rb")
      RecipeContext.new(self, cookbook).instance_eval(::File.read(path), path)
    end

    def converge(resource)
      @resources << resource
      case resource
      when CustomResource then run_action(resource)
      when Builtin then apply_builtin(resource)
      end
    end

    # Every built-in resource of +type+ (and +name+, when given).
    def find(type, name = nil)
      resources.select { |r| r.is_a?(Builtin) && r.type == type && (name.nil? || r.name == name) }
    end

    # Everything a chef-client run could print: its log, every command line
    # and every resource as Chef would show it on failure.
    def printable
      (log + commands.map { |c| c[:argv].join(' ') } + resources.map(&:to_text)).join("\n")
    end

    private

    def load_cookbook(dir)
      name = ::File.basename(dir)
      (@dirs ||= {})[name] = dir
      @cookbook_collection[name] = Cookbook.new(dir)
      Dir[::File.join(dir, 'libraries', '*.rb')].sort.each { |lib| require lib }
      attribute_file = ::File.join(dir, 'attributes', 'default.rb')
      load_attributes(attribute_file) if ::File.exist?(attribute_file)
      Dir[::File.join(dir, 'resources', '*.rb')].sort.each { |file| load_resource(name, file) }
    end

    def load_attributes(attribute_file)
      default_attributes = node.default
      context = Object.new
      context.define_singleton_method(:default) { default_attributes }
      context.instance_eval(::File.read(attribute_file), attribute_file)
    end

    def load_resource(cookbook, file)
      klass = Class.new(CustomResource)
      klass.resource_name = :"#{cookbook}_#{::File.basename(file, '.rb')}"
      klass.action_module = Module.new
      klass.class_eval(::File.read(file), file)
      @custom_resources[klass.resource_name] = klass
    end

    def run_action(resource)
      klass = resource.class
      raise 'custom resources here run in unified mode' unless klass.unified_mode?

      name = resource.declared_action || klass.default_action
      block = klass.actions.fetch(name) { raise ArgumentError, "#{resource}: no action #{name}" }
      context = ActionContext.new(self, resource)
      context.extend(klass.action_module)
      context.instance_eval(&block)
    end

    def apply_builtin(resource)
      resource.skipped = !resource.should_run?
      return if resource.skipped || whyrun || !@write_files

      case resource.type
      when :directory
        FileUtils.mkdir_p(resource.name)
        ::File.chmod(resource.props[:mode].to_i(8), resource.name) if resource.props[:mode]
      when :file
        ::File.write(resource.name, resource.props[:content])
        ::File.chmod(resource.props[:mode].to_i(8), resource.name) if resource.props[:mode]
      end
    end

    def real_shell(argv, env)
      stdout, stderr, status = Open3.capture3(env, *argv)
      [status.exitstatus, stdout, stderr]
    end
  end
end
